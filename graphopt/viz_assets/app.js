/* The explorer: wires the data, the model, the layout, the renderer and the panels together.
 *
 * Data (embedded as JSON): {title, states: [{label, graph}], passes: [{record, diff}], initial}, and
 * on pruning pages `pruning`: {groups: [{index, unit, channels, text, members, outputs, damage}], metric},
 * on profiled pages `profile`: {kernels: [{name, calls, ms, share, gflops, nodes}], nodes: {name: [{kernel, part}]},
 * kernel_ms, whole_ms, runs, target, notes} (graphopt/profile_view.py).
 * states[0] is the captured graph, states[k] the graph after passes[k - 1].
 * window.__graphopt exposes a small API for tests and benchmarks; window.__graphoptReady is set
 * (performance.now()) once the first frame is drawn and every handler is attached.
 */
"use strict";

(() => {
  const F = GraphoptFormat;
  const data = JSON.parse(document.getElementById("graphopt-data").textContent);
  for (const state of data.states) { // a pass that changed nothing shares the graph before it
    if (state.same_as !== undefined) state.graph = data.states[state.same_as].graph;
  }
  const $ = (id) => document.getElementById(id);
  const hash = new URLSearchParams(location.hash.slice(1));
  const AUTO_BUDGET = 30; // boxes shown before modules start collapsing

  const app = {
    stateIndex: data.initial,
    passIndex: data.passes.length ? data.initial - 1 : -1,
    side: "after",
    colorMode: data.profile ? "time" : "kind",
    kernelSort: { key: "ms", descending: true },
    showConstants: false,
    collapsed: null, // Set of module paths; null until the first state decides
    selected: null, // {node: name} or {group: path}
    pruneGroup: null, // index into data.pruning.groups of the highlighted dependency group
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
    if (app.side === "after" && !app.showConstants) { // folded constants are hidden: mark their users
      const m = model(); // (a user reads a new constant, so the diff also lists it as changed)
      for (const name of diff.folded || []) {
        const node = m.byName.get(name);
        if (!node) continue;
        for (const user of m.succs[node.id]) {
          const userName = m.graph.nodes[user].name;
          if (!result.has(userName) || result.get(userName) === "changed") result.set(userName, "folded");
        }
      }
    }
    return result;
  }

  /* Pruning pages: node name -> damage of the most sensitive group its output carries. */
  const sensitivity = new Map();
  for (const group of data.pruning?.groups || []) {
    if (group.damage === null || group.damage === undefined) continue;
    for (const name of group.outputs) sensitivity.set(name, Math.max(sensitivity.get(name) ?? 0, group.damage));
  }
  const sensitivityMax = Math.max(0, ...sensitivity.values());

  /* Profiled pages: node name -> share of the run its kernels took (a fused kernel's time goes to each
   * node it computes; a kernel identical layers share, to each layer by its part of the calls). */
  const timeShare = new Map();
  for (const [name, parts] of Object.entries(data.profile?.nodes || {})) {
    timeShare.set(name, parts.reduce((sum, p) => sum + data.profile.kernels[p.kernel].share * p.part, 0));
  }
  const timeMax = Math.max(0, ...timeShare.values());

  function highlighted() {
    return app.pruneGroup === null ? null : data.pruning.groups[app.pruneGroup];
  }

  /* What the user chose, as the scene builder reads it. */
  function view() {
    const group = highlighted();
    return {
      colorMode: app.colorMode, matches: app.matches, selected: app.selected, collapsed: app.collapsed,
      changeOf: changes(), measure: (text, font) => renderer.measure(text, font),
      groupMembers: group ? new Set(group.members) : null, groupLabel: group ? `group ${group.index}` : "",
      sensitivity, sensitivityMax, metric: data.pruning?.metric, timeShare, timeMax,
    };
  }

  /* Lay out the current state and hand the scene to the renderer and the minimap. */
  function rebuild() {
    const m = model();
    if (app.collapsed === null) {
      app.collapsed = hash.get("expand") === "all" ? new Set() : m.autoCollapse(AUTO_BUDGET);
    }
    app.scene = GraphoptScene.build(m, view());
    app.boxOfNode = new Map();
    app.boxOfGroup = new Map();
    app.scene.items.forEach((item, i) => {
      if (item.node) app.boxOfNode.set(item.node.name, i);
      else app.boxOfGroup.set(item.group.path, i);
    });
    renderer.setScene(app.scene);
    minimap.setScene(app.scene);
    updateStats(m, app.scene.items.length);
    updateLegend(m);
  }

  function restyle() {
    const m = model();
    GraphoptScene.restyle(app.scene, m, view());
    renderer.requestDraw();
    updateLegend(m);
  }

  function updateLegend(m) {
    const entries = GraphoptScene.legend(m, view());
    const changeEntries = app.passIndex < 0 ? [] : Object.entries(GraphoptScene.CHANGE_COLORS).map(([k, c]) =>
      `<span class="item"><span class="ring" style="border-color:${c}"></span>${k}</span>`);
    $("legend").innerHTML = entries.map(([c, label]) =>
      `<div><span class="swatch" style="background:${c}"></span>${F.escape(label)}</div>`).join("")
      + (changeEntries.length ? `<div class="changes">${changeEntries.join(" ")}</div>` : "");
  }

  function updateStats(m, boxes) {
    const s = m.graph.stats;
    $("stats").textContent = `${s.nodes} ops \u00b7 ${F.bytes(s.param_bytes)} params \u00b7 ${F.count(s.flops)}FLOP`
      + ` \u00b7 showing ${boxes} boxes`;
  }

  // -- selection and details ---------------------------------------------------------------
  function showDetails() {
    const m = model();
    const panel = $("details");
    if (app.selected?.node) {
      const node = m.byName.get(app.selected.node);
      if (!node) { panel.innerHTML = `<p class="empty">${F.escape(app.selected.node)} is not in this graph state.</p>`; return; }
      const inputs = m.preds[node.id].map((id) => m.graph.nodes[id]);
      panel.innerHTML = GraphoptDetails.nodeHTML(node, inputs, changes().get(node.name), m.graph.palette)
        + (data.profile ? GraphoptDetails.nodeKernelsHTML(data.profile, data.profile.nodes[node.name]) : "");
    } else if (app.selected?.group) {
      const group = m.groups.get(app.selected.group);
      panel.innerHTML = group ? GraphoptDetails.groupHTML(group, m.graph, app.collapsed.has(group.path)) : "";
    } else if (highlighted()) {
      panel.innerHTML = groupDetails(highlighted());
    } else {
      panel.innerHTML = `<p class="empty">Click a node to see its op, shapes, parameters, FLOPs and source line.`
        + ` Click a grey module box to expand it; click an open module's title to collapse it.</p>`;
    }
  }

  function select(selection) {
    app.selected = selection;
    const scene = app.scene;
    const chosen = (b) => (b.node ? b.node === selection?.node : b.group === selection?.group);
    scene.boxes.forEach((b) => { b.selected = chosen(b); });
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

  // -- pruning groups ----------------------------------------------------------------------
  /* Highlight dependency group `index` (null: none): open the modules around its nodes, frame them. */
  function highlightGroup(index) {
    app.pruneGroup = index === null || index === "" ? null : Number(index);
    $("prune-group").value = app.pruneGroup === null ? "" : String(app.pruneGroup);
    const group = highlighted();
    if (!group) { restyle(); showDetails(); return; }
    const m = model();
    for (const name of group.members) {
      const node = m.byName.get(name);
      if (node) for (const path of m.ancestors[node.id]) app.collapsed.delete(path);
    }
    app.selected = null;
    rebuild();
    const boxes = group.members.map((name) => app.boxOfNode.get(name)).filter((i) => i !== undefined)
      .map((i) => app.scene.boxes[i]);
    if (boxes.length) {
      const top = Math.min(...boxes.map((b) => b.y)), bottom = Math.max(...boxes.map((b) => b.y + b.h));
      const left = Math.min(...boxes.map((b) => b.x)), right = Math.max(...boxes.map((b) => b.x + b.w));
      const scale = Math.min(renderer.cssWidth / (right - left + 80), renderer.cssHeight / (bottom - top + 80), 1);
      renderer.view.scale = Math.max(scale, 0.05);
      renderer.centerOn((left + right) / 2, (top + bottom) / 2);
    }
    showDetails();
  }

  function groupDetails(group) {
    const link = (name) => `<a href="#" class="node-link" data-node="${F.escape(name)}">${F.escape(name)}</a>`;
    const damage = group.damage === null || group.damage === undefined ? ""
      : `<p>Sensitivity: ${+group.damage.toPrecision(3)} ${F.escape(data.pruning.metric || "metric")} lost on average`
        + ` over the levels measured.</p>`;
    return `<h3>Dependency group ${group.index}</h3><p>${group.channels} ${F.escape(group.unit)} removed together.</p>`
      + damage + `<p class="dim">${F.escape(group.text)}</p>`
      + `<p>${group.members.length} nodes carry or read its channels:</p><p>${group.members.map(link).join(", ")}</p>`;
  }

  function attachPruning() {
    if (!data.pruning) return;
    $("prune-group-label").hidden = false;
    $("prune-group").innerHTML = `<option value="">none</option>` + data.pruning.groups.map((g, k) =>
      `<option value="${k}">group ${g.index}: ${g.channels} ${F.escape(g.unit)}, ${F.escape(g.members[0] || "")}`
      + `${g.damage === null || g.damage === undefined ? "" : ` (loss ${+g.damage.toPrecision(2)})`}</option>`).join("");
    $("prune-group").addEventListener("change", (e) => highlightGroup(e.target.value));
    if (sensitivity.size) {
      $("color-mode").insertAdjacentHTML("beforeend", `<option value="sensitivity">pruning sensitivity</option>`);
    }
  }

  // -- kernel profile ----------------------------------------------------------------------
  function renderKernels() {
    const sort = app.kernelSort;
    $("kernels").innerHTML = GraphoptDetails.kernelsHTML(data.profile, sort.key, sort.descending);
  }

  function attachProfile() {
    if (!data.profile) return;
    $("color-mode").insertAdjacentHTML("beforeend", `<option value="time">measured time</option>`);
    $("color-mode").value = app.colorMode;
    $("kernels").hidden = false;
    $("kernels").addEventListener("click", (e) => {
      const button = e.target.closest("[data-sort]");
      if (!button) return;
      const key = button.dataset.sort;
      app.kernelSort = { key, descending: app.kernelSort.key === key ? !app.kernelSort.descending : key !== "name" };
      renderKernels();
    });
    renderKernels();
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
  /* Switch graph state. The view stays put around the selected node or, without one, around the
   * box nearest the centre that both states share, so before and after line up on screen. */
  function showState(stateIndex, passIndex, side) {
    const anchors = anchorCandidates();
    app.stateIndex = stateIndex;
    app.passIndex = passIndex;
    app.side = side;
    if (app.matches.size) {
      app.matches = new Set(GraphoptModel.search(model().graph, $("search").value).map((n) => n.name));
    }
    rebuild();
    const anchor = anchors.find(({ key }) => boxIndex(key) !== undefined);
    if (anchor) {
      const [gx, gy] = boxTop(boxIndex(anchor.key));
      renderer.centerOn(gx, gy, anchor.screen[0], anchor.screen[1]);
    }
    renderTimeline();
    showDetails();
  }

  const boxIndex = (key) => (key.node ? app.boxOfNode.get(key.node) : app.boxOfGroup.get(key.group));

  /* Boxes on screen now, the selected one first, then by distance from the centre. */
  function anchorCandidates() {
    const centre = [renderer.cssWidth / 2, renderer.cssHeight / 2];
    const candidates = app.scene.boxes.map((b, i) => {
      const screen = renderer.toScreen(...boxTop(i));
      const distance = b.selected ? -1 : Math.hypot(screen[0] - centre[0], screen[1] - centre[1]);
      return { key: b.node ? { node: b.node } : { group: b.group }, screen, distance };
    });
    return candidates.sort((a, b) => a.distance - b.distance).slice(0, 200);
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
    bar.innerHTML = `<span class="label">Passes</span>${sides}<span class="steps">${chips.join("")}</span>`;
    bar.querySelector(".step.active")?.scrollIntoView({ block: "nearest", inline: "center" });
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
    renderer,
    minimap,
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
    highlightGroup,
    setColorMode: (mode) => { app.colorMode = mode; $("color-mode").value = mode; restyle(); },
    /* The fill and outline of a node's box as drawn now (tests check the colouring). */
    boxColors(name) {
      const index = app.boxOfNode.get(name);
      if (index === undefined) return null;
      const b = app.scene.boxes[index];
      return { fill: b.fill, stroke: b.stroke };
    },
    sortKernels: (key, descending) => { app.kernelSort = { key, descending }; renderKernels(); },
  };

  attach();
  attachPruning();
  attachProfile();
  rebuild();
  renderer.fit();
  renderTimeline();
  showDetails();
  requestAnimationFrame(() => { window.__graphoptReady = performance.now(); });
})();
