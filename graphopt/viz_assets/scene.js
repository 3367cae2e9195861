/* What the canvas draws for one graph state and view: boxes (text, size, colours, change and
 * search marks), laid-out edges, and frames around open modules.
 *
 * `view` carries what the user chose: {colorMode, matches: Set of names, selected, collapsed,
 * changeOf: Map name -> "added" | "removed" | ..., measure(text, font)}, and for pruning pages
 * {groupMembers: Set of names of the highlighted dependency group (or null), groupLabel,
 * sensitivity: Map name -> damage, sensitivityMax, metric}, and for profiled pages
 * {timeShare: Map name -> share of the run its kernels took, timeMax}.
 */
"use strict";

const GraphoptScene = (() => {
  const F = GraphoptFormat;
  const BOX_HEIGHT = 42;
  const FRAME_PAD = 8, FRAME_TITLE = 16;
  const MATCH_GLOW = "rgba(250, 204, 21, 0.75)";
  const GROUP_GLOW = "rgba(37, 99, 235, 0.45)", GROUP_OUTLINE = "#2563eb";
  const UNGROUPED = { stroke: "#cbd5e1", fill: "#ffffff" };
  const num = (x) => String(+Number(x).toPrecision(3));
  const CHANGE_COLORS = {
    added: "#16a34a", removed: "#dc2626", changed: "#d97706", fused: "#7c3aed", folded: "#0891b2",
  };
  const TITLE_FONT = "600 12px system-ui, sans-serif", NAME_FONT = "11px system-ui", SHAPE_FONT = "11px monospace";

  /* Distinct colours for fusion groups: hues a golden angle apart, in order of appearance. */
  function fusionColor(graph, group) {
    if (!graph.fusionIndex) {
      graph.fusionIndex = new Map();
      for (const n of graph.nodes) {
        if (n.fusion_group && !graph.fusionIndex.has(n.fusion_group)) graph.fusionIndex.set(n.fusion_group, graph.fusionIndex.size);
      }
    }
    const index = graph.fusionIndex.get(group) ?? 0;
    return `hsl(${Math.round((index * 137.508) % 360)}, 62%, ${index % 2 ? 42 : 52}%)`;
  }

  /* Green (harmless) through yellow to red (the most sensitive group): share of the largest damage. */
  function sensitivityColor(damage, max) {
    const share = max > 0 ? Math.min(damage / max, 1) : 0;
    return `hsl(${Math.round(120 * (1 - share))}, 70%, 40%)`;
  }

  /* Pale (a small share of the run) through orange to deep red (the slowest node): share of the largest. */
  function timeColor(share, max) {
    const t = max > 0 ? Math.min(share / max, 1) : 0;
    return `hsl(${Math.round(48 * (1 - t))}, 85%, ${Math.round(62 - 22 * t)}%)`;
  }

  function nodeColors(node, graph, view) {
    if (view.colorMode === "time") {
      if (!view.timeShare?.has(node.name)) return UNGROUPED;
      const c = timeColor(view.timeShare.get(node.name), view.timeMax);
      return { stroke: c, fill: F.hslTint(c, 90) };
    }
    if (view.colorMode === "sensitivity") {
      if (!view.sensitivity?.has(node.name)) return UNGROUPED;
      const c = sensitivityColor(view.sensitivity.get(node.name), view.sensitivityMax);
      return { stroke: c, fill: F.hslTint(c, 88) };
    }
    if (view.colorMode === "fusion") {
      if (!node.fusion_group) return { stroke: "#cbd5e1", fill: "#ffffff" };
      const c = fusionColor(graph, node.fusion_group);
      return { stroke: c, fill: F.hslTint(c, 92) };
    }
    if (view.colorMode === "quant") {
      if (node.quantized) return { stroke: "#dc2626", fill: "#fee2e2" };
      const isFloat = node.dtypes.some((d) => d.startsWith("float") || d.startsWith("bfloat"));
      return isFloat ? { stroke: "#2563eb", fill: "#dbeafe" } : { stroke: "#94a3b8", fill: "#f1f5f9" };
    }
    const c = graph.palette[node.category] || graph.palette.other;
    return { stroke: c, fill: F.tint(c, 0.16) };
  }

  function groupColors(group, graph, view) {
    if (view.colorMode === "quant") {
      const q = group.members.filter((id) => graph.nodes[id].quantized).length;
      if (q === group.members.length) return { stroke: "#dc2626", fill: "#fee2e2" };
      if (q > 0) return { stroke: "#9333ea", fill: "#f3e8ff" };
    }
    return { stroke: "#64748b", fill: "#f1f5f9" };
  }

  function groupBox(g, graph, view) {
    const line1 = g.path.split(".").slice(-2).join(".");
    const line1b = g.type;
    const line2 = `${g.members.length} ops \u00b7 ${F.count(g.flops)}FLOP \u00b7 ${F.bytes(g.paramBytes)}`;
    const w = Math.max(view.measure(line1, TITLE_FONT) + view.measure(line1b, NAME_FONT) + 28,
      view.measure(line2, SHAPE_FONT) + 24);
    const counts = {};
    let matches = 0;
    for (const id of g.members) {
      const change = view.changeOf.get(graph.nodes[id].name);
      if (change) counts[change] = (counts[change] || 0) + 1;
      if (view.matches.has(graph.nodes[id].name)) matches++;
    }
    const inGroup = view.groupMembers ? g.members.filter((id) => view.groupMembers.has(graph.nodes[id].name)).length : 0;
    const changeKinds = Object.keys(counts);
    const time = view.colorMode === "time"
      ? g.members.reduce((sum, id) => sum + (view.timeShare?.get(graph.nodes[id].name) || 0), 0) : 0;
    const badge = changeKinds.length ? changeKinds.map((k) => `${counts[k]} ${k}`).join(", ")
      : matches ? `${matches} found` : inGroup ? `${inGroup} in ${view.groupLabel}`
        : time > 0 ? `${+(100 * time).toPrecision(2)}% of the run` : null;
    return {
      group: g.path, line1, line1b, line2, w: Math.min(Math.max(w, 120), 320), h: BOX_HEIGHT,
      ...groupColors(g, graph, view), badge,
      outline: changeKinds.length ? CHANGE_COLORS[changeKinds[0]] : inGroup ? GROUP_OUTLINE : null,
      glow: matches ? MATCH_GLOW : inGroup ? GROUP_GLOW : null,
      selected: view.selected?.group === g.path,
    };
  }

  function nodeBox(node, graph, view) {
    const shapeText = node.shapes.length ? F.shape(node.shapes[0]) : node.op === "output" ? "" : "\u2014";
    const dtype = node.dtypes[0] && node.dtypes[0] !== "float32" ? " " + node.dtypes[0] : "";
    const line1 = node.op === "placeholder" ? "input" : node.kind;
    const line1b = node.name === line1 ? "" : node.name;
    const line2 = shapeText + dtype;
    const w = Math.max(view.measure(line1, TITLE_FONT) + view.measure(line1b, NAME_FONT) + 30,
      view.measure(line2, SHAPE_FONT) + 24);
    const change = view.changeOf.get(node.name);
    const inGroup = Boolean(view.groupMembers?.has(node.name));
    return {
      node: node.name, line1, line1b, line2, w: Math.min(Math.max(w, 96), 280), h: BOX_HEIGHT,
      ...nodeColors(node, graph, view), outline: change ? CHANGE_COLORS[change] : inGroup ? GROUP_OUTLINE : null,
      badge: change || (inGroup ? view.groupLabel : null), inGroup,
      glow: view.matches.has(node.name) ? MATCH_GLOW : inGroup ? GROUP_GLOW : null,
      selected: view.selected?.node === node.name,
    };
  }

  const makeBox = (item, m, view) => (item.group ? groupBox(item.group, m.graph, view) : nodeBox(item.node, m.graph, view));

  /* Open modules around a visible item, outermost first. */
  function openParents(m, item, collapsed) {
    let chain;
    if (item.node) chain = m.ancestors[item.node.id];
    else {
      chain = [];
      for (let p = item.group.parent; p; p = m.groups.get(p).parent) chain.unshift(p);
    }
    return chain.filter((path) => !collapsed.has(path));
  }

  /* Room above the first and below the last box of each open module, for its frame and title. */
  function frameRoom(m, items, collapsed) {
    const above = new Float64Array(items.length), below = new Float64Array(items.length);
    const first = new Map(), last = new Map();
    items.forEach((item, i) => {
      for (const path of openParents(m, item, collapsed)) {
        if (!first.has(path)) first.set(path, i);
        last.set(path, i);
      }
    });
    for (const i of first.values()) above[i] += FRAME_PAD + FRAME_TITLE;
    for (const i of last.values()) below[i] += FRAME_PAD;
    return [above, below];
  }

  /* Outlines of open modules around their visible members (outermost first, for drawing). */
  function frames(m, items, boxes, view) {
    const bounds = new Map();
    const grow = (path, x0, y0, x1, y1) => {
      const b = bounds.get(path);
      if (!b) bounds.set(path, [x0, y0, x1, y1]);
      else { b[0] = Math.min(b[0], x0); b[1] = Math.min(b[1], y0); b[2] = Math.max(b[2], x1); b[3] = Math.max(b[3], y1); }
    };
    items.forEach((item, i) => {
      const b = boxes[i];
      for (const path of openParents(m, item, view.collapsed)) grow(path, b.x, b.y, b.x + b.w, b.y + b.h);
    });
    const ordered = [...bounds.keys()].sort((a, b) => m.groups.get(b).depth - m.groups.get(a).depth);
    const result = [];
    for (const path of ordered) { // innermost first, so each parent grows around its children
      const group = m.groups.get(path);
      const [x0, y0, x1, y1] = bounds.get(path);
      const changed = group.members.find((id) => view.changeOf.has(m.graph.nodes[id].name));
      const frame = {
        path, depth: group.depth, titleH: FRAME_TITLE,
        x: x0 - FRAME_PAD, y: y0 - FRAME_PAD - FRAME_TITLE,
        w: x1 - x0 + 2 * FRAME_PAD, h: y1 - y0 + 2 * FRAME_PAD + FRAME_TITLE,
        title: group.type ? `${path} \u00b7 ${group.type}` : path,
        highlight: changed === undefined ? null : CHANGE_COLORS[view.changeOf.get(m.graph.nodes[changed].name)],
      };
      if (group.parent && bounds.has(group.parent)) grow(group.parent, frame.x, frame.y, frame.x + frame.w, frame.y + frame.h);
      result.push(frame);
    }
    return result.reverse();
  }

  /* Lay out model state `m` with `view.collapsed` modules folded; returns the renderer's scene. */
  function build(m, view) {
    const vg = m.visibleGraph(view.collapsed);
    const boxes = vg.items.map((item) => makeBox(item, m, view));
    const [above, below] = frameRoom(m, vg.items, view.collapsed);
    const layout = GraphoptLayout.layout(
      boxes.length, boxes.map((b) => b.w), boxes.map((b) => b.h), vg.edges, above, below);
    boxes.forEach((b, i) => { b.x = layout.x[i] - b.w / 2; b.y = layout.top[i]; });
    const routes = layout.routes.map((r) => ({ ...r, from: vg.edges[r.edge][0], to: vg.edges[r.edge][1] }));
    const selectedBox = boxes.findIndex((b) => b.selected);
    return {
      boxes, routes, layout, items: vg.items, frames: frames(m, vg.items, boxes, view),
      width: layout.width, height: layout.height, selectedBox: selectedBox < 0 ? null : selectedBox,
    };
  }

  /* Recolour and re-mark the boxes in place (search, colour mode): the layout stays. */
  function restyle(scene, m, view) {
    scene.items.forEach((item, i) => {
      const box = scene.boxes[i];
      const { x, y, w, h } = box;
      Object.assign(box, makeBox(item, m, view), { x, y, w, h });
    });
  }

  /* Legend rows [colour, label] for the colour mode. */
  function legend(m, view) {
    const graph = m.graph;
    if (view.colorMode === "fusion") {
      const groups = new Map();
      for (const n of graph.nodes) if (n.fusion_group) groups.set(n.fusion_group, n.fusion_pattern || "");
      const entries = [...groups.entries()].slice(0, 12).map(([g, p]) => [fusionColor(graph, g), `${g}${p ? " " + p : ""}`]);
      if (groups.size > 12) entries.push(["#ffffff", `\u2026 ${groups.size - 12} more`]);
      return [...entries, ["#cbd5e1", "not fused"]];
    }
    if (view.colorMode === "quant") {
      return [["#dc2626", "quantized"], ["#2563eb", "float"], ["#94a3b8", "other (int, shape)"]];
    }
    if (view.colorMode === "sensitivity") {
      const max = view.sensitivityMax, metric = view.metric || "metric";
      return [
        [sensitivityColor(max, max), `most sensitive: ${num(max)} ${metric} lost (mean over levels)`],
        [sensitivityColor(max / 2, max), `${num(max / 2)} lost`],
        [sensitivityColor(0, max), "harmless: 0 lost"],
        [UNGROUPED.stroke, "in no prunable group"],
      ];
    }
    if (view.colorMode === "time") {
      const max = view.timeMax, pct = (x) => `${+(100 * x).toPrecision(3)}%`;
      return [
        [timeColor(max, max), `slowest: ${pct(max)} of the run in its kernels`],
        [timeColor(max / 2, max), `${pct(max / 2)}`],
        [timeColor(0, max), "next to none"],
        [UNGROUPED.stroke, "no kernel (folded, a view, or not compiled)"],
      ];
    }
    const present = new Set(graph.nodes.filter((n) => m.shown[n.id]).map((n) => n.category));
    return Object.keys(graph.palette).filter((c) => present.has(c)).map((c) => [graph.palette[c], c]);
  }

  return { build, restyle, legend, sensitivityColor, timeColor, CHANGE_COLORS, GROUP_OUTLINE };
})();
