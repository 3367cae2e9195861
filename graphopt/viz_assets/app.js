/* The explorer: wires the data, the model, the layout, the renderer and the panels together.
 *
 * Data (embedded as JSON): {title, states: [{label, graph}], passes: [{record, diff}], initial}.
 * states[0] is the captured graph, states[k] the graph after passes[k - 1].
 * window.__graphopt exposes a small API for tests and benchmarks; window.__graphoptReady is set
 * (performance.now()) once the first frame is drawn and every handler is attached.
 */
"use strict";

(() => {
  const F = GraphoptFormat;
  const data = JSON.parse(document.getElementById("graphopt-data").textContent);
  const $ = (id) => document.getElementById(id);
  const hash = new URLSearchParams(location.hash.slice(1));
  const BOX_HEIGHT = 42;
  const AUTO_BUDGET = 30; // boxes shown before modules start collapsing
  const CHANGE_COLORS = {
    added: "#16a34a", removed: "#dc2626", changed: "#d97706", fused: "#7c3aed", folded: "#0891b2",
  };
  const FRAME_PAD = 8, FRAME_TITLE = 16;
  const MATCH_GLOW = "rgba(250, 204, 21, 0.75)";

  const app = {
    stateIndex: data.initial,
    passIndex: data.passes.length ? data.initial - 1 : -1,
    side: "after",
    colorMode: "kind",
    showConstants: false,
    collapsed: null, // Set of module paths; null until the first state decides
    selected: null, // {node: name} or {group: path}
    matches: new Set(),
    models: [],
    scene: null,
  };

  const renderer = new GraphoptRenderer($("canvas"), { onClick, onHover, onDraw: () => minimap.draw() });
  const minimap = new GraphoptMinimap($("minimap"), renderer);

  function model() {
    let m = app.models[app.stateIndex];
    if (!m) {
      m = new GraphoptModel.State(data.states[app.stateIndex].graph, { showConstants: app.showConstants });
      app.models[app.stateIndex] = m;
    }
    if (m.showConstants !== app.showConstants) m.setShowConstants(app.showConstants);
    return m;
  }

  /* name -> change kind, for the pass and side being shown. */
  function changes() {
    const result = new Map();
    if (app.passIndex < 0) return result;
    const diff = data.passes[app.passIndex].diff;
    const kinds = app.side === "before" ? ["removed", "changed", "fused"] : ["added", "folded", "changed", "fused"];
    for (const kind of kinds) for (const name of diff[kind] || []) if (!result.has(name)) result.set(name, kind);
    return result;
  }

  function nodeColors(node) {
    const palette = data.states[app.stateIndex].graph.palette;
    if (app.colorMode === "fusion") {
      if (!node.fusion_group) return { stroke: "#cbd5e1", fill: "#ffffff" };
      const c = fusionColor(node.fusion_group);
      return { stroke: c, fill: F.hslTint(c, 92) };
    }
    if (app.colorMode === "quant") {
      if (node.quantized) return { stroke: "#dc2626", fill: "#fee2e2" };
      const isFloat = node.dtypes.some((d) => d.startsWith("float") || d.startsWith("bfloat"));
      return isFloat ? { stroke: "#2563eb", fill: "#dbeafe" } : { stroke: "#94a3b8", fill: "#f1f5f9" };
    }
    const c = palette[node.category] || palette.other;
    return { stroke: c, fill: F.tint(c, 0.16) };
  }

  /* Distinct colours for fusion groups: hues a golden angle apart, in order of appearance. */
  function fusionColor(group) {
    const graph = data.states[app.stateIndex].graph;
    if (!graph.fusionIndex) {
      graph.fusionIndex = new Map();
      for (const n of graph.nodes) {
        if (n.fusion_group && !graph.fusionIndex.has(n.fusion_group)) graph.fusionIndex.set(n.fusion_group, graph.fusionIndex.size);
      }
    }
    const index = graph.fusionIndex.get(group) ?? 0;
    return `hsl(${Math.round((index * 137.508) % 360)}, 62%, ${index % 2 ? 42 : 52}%)`;
  }

  function groupColors(group, graph) {
    if (app.colorMode === "quant") {
      const q = group.members.filter((id) => graph.nodes[id].quantized).length;
      if (q === group.members.length) return { stroke: "#dc2626", fill: "#fee2e2" };
      if (q > 0) return { stroke: "#9333ea", fill: "#f3e8ff" };
    }
    return { stroke: "#64748b", fill: "#f1f5f9" };
  }

  function makeBox(item, m, changeOf) {
    const graph = m.graph;
    const font = "600 12px system-ui, sans-serif";
    if (item.group) {
      const g = item.group;
      const short = g.path.split(".").slice(-2).join(".");
      const line1 = short;
      const line1b = g.type;
      const line2 = `${g.members.length} ops \u00b7 ${F.count(g.flops)}FLOP \u00b7 ${F.bytes(g.paramBytes)}`;
      const w = Math.max(renderer.measure(line1, font) + renderer.measure(line1b, "11px system-ui") + 28,
        renderer.measure(line2, "11px monospace") + 24);
      const counts = {};
      let matches = 0;
      for (const id of g.members) {
        const change = changeOf.get(graph.nodes[id].name);
        if (change) counts[change] = (counts[change] || 0) + 1;
        if (app.matches.has(graph.nodes[id].name)) matches++;
      }
      const changeKinds = Object.keys(counts);
      const outline = changeKinds.length ? CHANGE_COLORS[changeKinds[0]] : null;
      const badge = changeKinds.length
        ? changeKinds.map((k) => `${counts[k]} ${k}`).join(", ") : matches ? `${matches} found` : null;
      return {
        group: g.path, line1, line1b, line2, w: Math.min(Math.max(w, 120), 320), h: BOX_HEIGHT,
        ...groupColors(g, graph), outline, badge,
        glow: matches ? MATCH_GLOW : null,
        selected: app.selected?.group === g.path,
      };
    }
    const node = item.node;
    const shapeText = node.shapes.length ? F.shape(node.shapes[0]) : node.op === "output" ? "" : "\u2014";
    const dtype = node.dtypes[0] && node.dtypes[0] !== "float32" ? " " + node.dtypes[0] : "";
    const line1 = node.op === "placeholder" ? "input" : node.kind;
    const line1b = node.name === line1 ? "" : node.name;
    const line2 = shapeText + dtype;
    const w = Math.max(renderer.measure(line1, font) + renderer.measure(line1b, "11px system-ui") + 30,
      renderer.measure(line2, "11px monospace") + 24);
    const change = changeOf.get(node.name);
    return {
      node: node.name, line1, line1b, line2, w: Math.min(Math.max(w, 96), 280), h: BOX_HEIGHT,
      ...nodeColors(node), outline: change ? CHANGE_COLORS[change] : null,
      badge: change || null,
      glow: app.matches.has(node.name) ? MATCH_GLOW : null,
      selected: app.selected?.node === node.name,
    };
  }

  /* Lay out the current state and hand the scene to the renderer. */
  function rebuild() {
    const m = model();
    if (app.collapsed === null) {
      app.collapsed = hash.get("expand") === "all" ? new Set() : m.autoCollapse(AUTO_BUDGET);
    }
    const changeOf = changes();
    const vg = m.visibleGraph(app.collapsed);
    const boxes = vg.items.map((item) => makeBox(item, m, changeOf));
    const [above, below] = frameRoom(m, vg);
    const layout = GraphoptLayout.layout(boxes.length, boxes.map((b) => b.w), boxes.map((b) => b.h), vg.edges, above, below);
    boxes.forEach((b, i) => { b.x = layout.x[i] - b.w / 2; b.y = layout.top[i]; });
    const routes = layout.routes.map((r) => {
      const [u, v] = vg.edges[r.edge];
      return { ...r, from: u, to: v };
    });
    let selectedBox = null;
    boxes.forEach((b, i) => { if (b.selected) selectedBox = i; });
    app.scene = {
      boxes, routes, layout, items: vg.items, frames: frames(m, vg, boxes, changeOf),
      width: layout.width, height: layout.height, selectedBox,
    };
    app.boxOfNode = new Map();
    app.boxOfGroup = new Map();
    vg.items.forEach((item, i) => {
      if (item.node) app.boxOfNode.set(item.node.name, i);
      else app.boxOfGroup.set(item.group.path, i);
    });
    renderer.setScene(app.scene);
    minimap.setScene(app.scene);
    updateStats(m, vg);
    updateLegend(m);
  }

  /* Recolour and re-badge the boxes in place (search matches, colour mode): no new layout. */
  function restyle() {
    const m = model();
    const changeOf = changes();
    app.scene.items.forEach((item, i) => {
      const box = app.scene.boxes[i];
      const { x, y, w, h } = box;
      Object.assign(box, makeBox(item, m, changeOf), { x, y, w, h });
    });
    renderer.requestDraw();
    updateLegend(m);
  }

  /* Room above the first and below the last box of each open module, for its frame and title. */
  function frameRoom(m, vg) {
    const above = new Float64Array(vg.items.length), below = new Float64Array(vg.items.length);
    const first = new Map(), last = new Map();
    vg.items.forEach((item, i) => {
      const parents = item.node ? m.ancestors[item.node.id] : ancestorPaths(m, item.group);
      for (const path of parents) {
        if (app.collapsed.has(path)) continue;
        if (!first.has(path)) first.set(path, i);
        last.set(path, i);
      }
    });
    for (const i of first.values()) above[i] += FRAME_PAD + FRAME_TITLE;
    for (const i of last.values()) below[i] += FRAME_PAD;
    return [above, below];
  }

  /* Outlines of expanded modules around their visible members, innermost first. */
  function frames(m, vg, boxes, changeOf) {
    const bounds = new Map();
    const grow = (path, x0, y0, x1, y1) => {
      const b = bounds.get(path);
      if (!b) bounds.set(path, [x0, y0, x1, y1]);
      else { b[0] = Math.min(b[0], x0); b[1] = Math.min(b[1], y0); b[2] = Math.max(b[2], x1); b[3] = Math.max(b[3], y1); }
    };
    vg.items.forEach((item, i) => {
      const b = boxes[i];
      const parents = item.node ? m.ancestors[item.node.id] : ancestorPaths(m, item.group);
      for (const path of parents) if (!app.collapsed.has(path)) grow(path, b.x, b.y, b.x + b.w, b.y + b.h);
    });
    const pad = FRAME_PAD, titleH = FRAME_TITLE;
    const ordered = [...bounds.keys()].sort((a, b) => m.groups.get(b).depth - m.groups.get(a).depth);
    const result = [];
    for (const path of ordered) {
      const group = m.groups.get(path);
      const [x0, y0, x1, y1] = bounds.get(path);
      const frame = {
        path, depth: group.depth, x: x0 - pad, y: y0 - pad - titleH, w: x1 - x0 + 2 * pad, h: y1 - y0 + 2 * pad + titleH,
        titleH, title: group.type ? `${path} \u00b7 ${group.type}` : path,
        highlight: CHANGE_COLORS[changeOf.get(m.graph.nodes[group.members.find((id) => changeOf.has(m.graph.nodes[id].name))]?.name)] || null,
      };
      if (group.parent && bounds.has(group.parent)) grow(group.parent, frame.x, frame.y, frame.x + frame.w, frame.y + frame.h);
      result.push(frame);
    }
    return result.reverse(); // outermost drawn first
  }

  function ancestorPaths(m, group) {
    const chain = [];
    for (let p = group.parent; p; p = m.groups.get(p).parent) chain.unshift(p);
    return chain;
  }

  function updateStats(m, vg) {
    const s = m.graph.stats;
    $("stats").textContent = `${s.nodes} ops \u00b7 ${F.bytes(s.param_bytes)} params \u00b7 ${F.count(s.flops)}FLOP`
      + ` \u00b7 showing ${vg.items.length} boxes`;
  }

  function updateLegend(m) {
    const palette = m.graph.palette;
    let entries = [];
    if (app.colorMode === "kind") {
      const present = new Set(m.graph.nodes.filter((n) => m.shown[n.id]).map((n) => n.category));
      entries = Object.keys(palette).filter((c) => present.has(c)).map((c) => [palette[c], c]);
    } else if (app.colorMode === "fusion") {
      const groups = new Map();
      for (const n of m.graph.nodes) if (n.fusion_group) groups.set(n.fusion_group, n.fusion_pattern || "");
      entries = [...groups.entries()].slice(0, 12).map(([g, p]) => [fusionColor(g), `${g}${p ? " " + p : ""}`]);
      if (groups.size > 12) entries.push(["#ffffff", `\u2026 ${groups.size - 12} more`]);
      entries.push(["#cbd5e1", "not fused"]);
    } else {
      entries = [["#dc2626", "quantized"], ["#2563eb", "float"], ["#94a3b8", "other (int, shape)"]];
    }
    const changeEntries = app.passIndex >= 0
      ? Object.entries(CHANGE_COLORS).map(([k, c]) => `<span class="item"><span class="ring" style="border-color:${c}"></span>${k}</span>`) : [];
    $("legend").innerHTML = entries.map(([c, label]) =>
      `<div><span class="swatch" style="background:${c}"></span>${F.escape(label)}</div>`).join("")
      + (changeEntries.length ? `<div class="changes">${changeEntries.join(" ")}</div>` : "");
  }

  // -- selection and details ---------------------------------------------------------------
  function showDetails() {
    const m = model();
    const panel = $("details");
    if (app.selected?.node) {
      const node = m.byName.get(app.selected.node);
      if (!node) { panel.innerHTML = `<p class="empty">${F.escape(app.selected.node)} is not in this graph state.</p>`; return; }
      const inputs = m.preds[node.id].map((id) => m.graph.nodes[id]);
      panel.innerHTML = GraphoptDetails.nodeHTML(node, inputs, changes().get(node.name), m.graph.palette);
    } else if (app.selected?.group) {
      const group = m.groups.get(app.selected.group);
      panel.innerHTML = group ? GraphoptDetails.groupHTML(group, m.graph, app.collapsed.has(group.path)) : "";
    } else {
      panel.innerHTML = `<p class="empty">Click a node to see its op, shapes, parameters, FLOPs and source line.`
        + ` Click a grey module box to expand it; click an open module's title to collapse it.</p>`;
    }
  }

  function select(selection) {
    app.selected = selection;
    const scene = app.scene;
    scene.boxes.forEach((b) => { b.selected = !!selection && (b.node === selection.node && !!b.node || b.group === selection.group && !!b.group); });
    scene.selectedBox = scene.boxes.findIndex((b) => b.selected);
    if (scene.selectedBox < 0) scene.selectedBox = null;
    renderer.requestDraw();
    showDetails();
  }

  /* Re-lay out, keeping the graph point under an anchor where it was on screen. */
  function relayoutKeeping(anchorScreen, findAnchor) {
    rebuild();
    const target = findAnchor();
    if (anchorScreen && target) renderer.centerOn(target[0], target[1], anchorScreen[0], anchorScreen[1]);
  }

  function boxTop(index) {
    const b = app.scene.boxes[index];
    return [b.x + b.w / 2, b.y];
  }

  function frameTop(path) {
    const f = app.scene.frames.find((fr) => fr.path === path);
    return f ? [f.x + f.w / 2, f.y] : null;
  }

  function setCollapsed(path, collapse) {
    const m = model();
    const index = collapse ? null : app.boxOfGroup.get(path);
    const frame = collapse ? frameTop(path) : null;
    const anchor = collapse ? frame && renderer.toScreen(...frame) : index !== undefined && renderer.toScreen(...boxTop(index));
    if (collapse) {
      app.collapsed.add(path);
      for (const g of m.groups.values()) if (g.path.startsWith(path + ".")) app.collapsed.delete(g.path);
    } else {
      app.collapsed.delete(path);
      for (const child of m.groups.get(path).children) app.collapsed.add(child); // open one level
    }
    app.selected = { group: path };
    relayoutKeeping(anchor, () => (collapse ? boxTop(app.boxOfGroup.get(path)) : frameTop(path)));
    showDetails();
  }

  /* Make a node visible (expand the modules around it), select it and bring it into view. */
  function reveal(name) {
    let m = model();
    const node = m.byName.get(name);
    if (!node) return false;
    if (!m.shown[node.id]) { // a constant: show constants first
      app.showConstants = true;
      $("show-constants").checked = true;
      m = model();
    }
    for (const path of m.ancestors[node.id]) app.collapsed.delete(path);
    app.selected = { node: name };
    rebuild();
    const b = app.scene.boxes[app.boxOfNode.get(name)];
    if (renderer.view.scale < 0.6) renderer.view.scale = 0.9;
    renderer.centerOn(b.x + b.w / 2, b.y + b.h / 2);
    showDetails();
    return true;
  }

  function onClick(hit) {
    if (!hit) return;
    if (hit.frame) { setCollapsed(hit.frame, true); return; }
    const box = app.scene.boxes[hit.box];
    if (box.group) setCollapsed(box.group, false);
    else select({ node: box.node });
  }

  function onHover(hit, event) {
    const tip = $("tooltip");
    if (!hit || hit.box === undefined) { tip.hidden = true; return; }
    const box = app.scene.boxes[hit.box];
    tip.textContent = box.group ? `${box.group} \u2014 click to expand` : `${box.node}: ${box.line1} ${box.line2}`;
    const rect = $("canvas").getBoundingClientRect();
    tip.style.left = `${event.clientX - rect.left + 14}px`;
    tip.style.top = `${event.clientY - rect.top + 14}px`;
    tip.hidden = false;
  }

  // -- search ------------------------------------------------------------------------------
  function runSearch() {
    const query = $("search").value;
    const found = GraphoptModel.search(model().graph, query);
    app.matches = new Set(found.map((n) => n.name));
    const list = $("search-results");
    if (!query.trim()) { list.hidden = true; restyle(); return; }
    const summary = `<div class="more">${found.length} match${found.length === 1 ? "" : "es"}`
      + `${found.length ? " \u00b7 Enter opens the first" : ""}</div>`;
    list.innerHTML = !found.length ? summary : summary + found.slice(0, 30).map((n) => `<div class="result" data-node="${F.escape(n.name)}"><b>${F.escape(n.name)}</b>`
        + ` <span class="dim">${F.escape(n.kind)} ${F.escape(F.shape(n.shapes[0]))}</span></div>`).join("")
        + (found.length > 30 ? `<div class="more">${found.length - 30} more\u2026</div>` : "");
    list.hidden = false;
    restyle();
  }

  // -- pipeline timeline -------------------------------------------------------------------
  function showState(stateIndex, passIndex, side) {
    const selectedName = app.selected?.node;
    app.stateIndex = stateIndex;
    app.passIndex = passIndex;
    app.side = side;
    const keep = selectedName && app.boxOfNode.has(selectedName)
      ? renderer.toScreen(...boxTop(app.boxOfNode.get(selectedName))) : null;
    if (app.matches.size) {
      app.matches = new Set(GraphoptModel.search(model().graph, $("search").value).map((n) => n.name));
    }
    relayoutKeeping(keep, () => (app.boxOfNode.has(selectedName) ? boxTop(app.boxOfNode.get(selectedName)) : null));
    renderTimeline();
    showDetails();
  }

  function renderTimeline() {
    const bar = $("timeline");
    if (!data.passes.length) { bar.hidden = true; return; }
    bar.hidden = false;
    const s0 = data.states[0].graph.stats;
    const chips = [`<button class="step${app.passIndex < 0 ? " active" : ""}" data-pass="-1">captured`
      + `<small>${s0.nodes} ops</small></button>`];
    data.passes.forEach((p, k) => {
      const r = p.record;
      const delta = r.before.nodes === r.after.nodes ? `${r.after.nodes} ops` : `${r.before.nodes}\u2192${r.after.nodes} ops`;
      chips.push(`<span class="arrow">\u2192</span><button class="step${k === app.passIndex ? " active" : ""}`
        + `${r.changed ? " did-change" : " idle"}" data-pass="${k}" title="${r.changed ? "changed the graph" : "no change"}">`
        + `${F.escape(r.name)}<small>${delta}</small></button>`);
    });
    const sides = app.passIndex >= 0
      ? `<span class="sides"><button data-side="before" class="${app.side === "before" ? "active" : ""}">Before</button>`
        + `<button data-side="after" class="${app.side === "after" ? "active" : ""}">After</button></span>` : "";
    bar.innerHTML = `<span class="label">Passes</span>${sides}${chips.join("")}`;
    bar.querySelector(".step.active")?.scrollIntoView({ block: "nearest", inline: "nearest" });
    const report = $("pass-report");
    if (app.passIndex >= 0) {
      report.hidden = false;
      report.innerHTML = GraphoptDetails.passHTML(data.passes[app.passIndex], app.side);
    } else {
      report.hidden = true;
    }
  }

  function onTimelineClick(e) {
    const step = e.target.closest("[data-pass]");
    if (step) {
      const k = Number(step.dataset.pass);
      showState(k < 0 ? 0 : k + 1, k, "after");
      return;
    }
    const side = e.target.closest("[data-side]");
    if (side && app.passIndex >= 0) {
      const s = side.dataset.side;
      showState(s === "before" ? app.passIndex : app.passIndex + 1, app.passIndex, s);
    }
  }

  /* A node link in a panel: find the node in the state shown, or in the state before the pass. */
  function onPanelClick(e) {
    const link = e.target.closest(".node-link");
    if (link) {
      e.preventDefault();
      const name = link.dataset.node;
      if (!model().byName.has(name) && app.passIndex >= 0) {
        const other = app.side === "after" ? "before" : "after";
        showState(other === "before" ? app.passIndex : app.passIndex + 1, app.passIndex, other);
      }
      reveal(name);
      return;
    }
    const action = e.target.closest(".group-action");
    if (action) setCollapsed(action.dataset.group, action.dataset.action === "collapse");
  }

  // -- wiring ------------------------------------------------------------------------------
  function attach() {
    $("model-name").textContent = data.title;
    $("search").addEventListener("input", runSearch);
    $("search").addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        const first = $("search-results").querySelector(".result");
        if (first) { reveal(first.dataset.node); $("search-results").hidden = true; }
      } else if (e.key === "Escape") {
        $("search").value = "";
        runSearch();
      }
    });
    $("search-results").addEventListener("click", (e) => {
      const result = e.target.closest(".result");
      if (!result) return;
      reveal(result.dataset.node);
      $("search-results").hidden = true;
    });
    $("color-mode").addEventListener("change", (e) => { app.colorMode = e.target.value; restyle(); });
    document.addEventListener("mousedown", (e) => {
      if (!e.target.closest(".search-box")) $("search-results").hidden = true;
    });
    $("search").addEventListener("focus", () => { if ($("search").value.trim()) $("search-results").hidden = false; });
    $("show-constants").addEventListener("change", (e) => { app.showConstants = e.target.checked; rebuild(); });
    $("expand-all").addEventListener("click", () => { app.collapsed = new Set(); rebuild(); renderer.fit(); });
    $("collapse-all").addEventListener("click", () => {
      app.collapsed = model().autoCollapse(AUTO_BUDGET);
      rebuild();
      renderer.fit();
    });
    $("fit").addEventListener("click", () => renderer.fit());
    $("timeline").addEventListener("click", onTimelineClick);
    $("sidebar").addEventListener("click", onPanelClick);
    document.addEventListener("keydown", (e) => {
      if (e.target.tagName === "INPUT") return;
      if (e.key === "/") { e.preventDefault(); $("search").focus(); }
      if (e.key === "f") renderer.fit();
      if (e.key === "Escape") select(null);
    });
  }

  window.__graphopt = {
    app,
    reveal,
    select: (name) => reveal(name),
    clearSelection: () => select(null),
    expandAll: () => { app.collapsed = new Set(); rebuild(); },
    /* Screen position (CSS pixels, relative to the canvas) of a node's box centre, or null. */
    screenPosition(name) {
      const index = app.boxOfNode.get(name);
      if (index === undefined) return null;
      const b = app.scene.boxes[index];
      return renderer.toScreen(b.x + b.w / 2, b.y + b.h / 2);
    },
    groupScreenPosition(path) {
      const index = app.boxOfGroup.get(path);
      if (index === undefined) return null;
      const b = app.scene.boxes[index];
      return renderer.toScreen(b.x + b.w / 2, b.y + b.h / 2);
    },
    /* Screen position of an open module's title bar (clicking it collapses the module), or null. */
    frameTitlePosition(path) {
      const frame = app.scene.frames.find((f) => f.path === path);
      return frame ? renderer.toScreen(frame.x + 30, frame.y + frame.titleH / 2) : null;
    },
    visibleBoxes: () => app.scene.boxes.length,
    /* Milliseconds to draw one frame at the current view, or zoomed out to show every box. */
    timeDraw(whole) {
      const saved = { ...renderer.view };
      if (whole) {
        const scale = Math.min(renderer.cssWidth / app.scene.width, renderer.cssHeight / app.scene.height);
        Object.assign(renderer.view, { scale, tx: 0, ty: 0 });
      }
      const start = performance.now();
      renderer.draw();
      const elapsed = performance.now() - start;
      Object.assign(renderer.view, saved);
      renderer.requestDraw();
      return elapsed;
    },
    showPass: (k, side) => showState(side === "before" ? k : k + 1, k, side || "after"),
  };

  attach();
  rebuild();
  renderer.fit();
  renderTimeline();
  showDetails();
  requestAnimationFrame(() => { window.__graphoptReady = performance.now(); });
})();
