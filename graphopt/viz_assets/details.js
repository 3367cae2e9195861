/* The side panels as HTML: the selected node or module, and the selected pass's report. */
"use strict";

const GraphoptDetails = (() => {
  const F = GraphoptFormat;
  const row = (label, value) => (value === null || value === undefined || value === ""
    ? "" : `<tr><th>${F.escape(label)}</th><td>${value}</td></tr>`);
  const mono = (text) => `<code>${F.escape(text)}</code>`;
  const nodeLink = (name) => `<a href="#" class="node-link" data-node="${F.escape(name)}">${F.escape(name)}</a>`;

  function tensorList(shapes, dtypes) {
    if (!shapes.length) return "";
    return shapes.map((s, i) => `${mono(F.shape(s))} <span class="dim">${F.escape(dtypes[i] || "")}</span>`)
      .join("<br>");
  }

  function paramTable(params) {
    if (!params.length) return "";
    const total = params.reduce((sum, p) => sum + p.bytes, 0);
    const rows = params.map((p) => `<tr><td>${F.escape(p.name)}</td><td>${mono(F.shape(p.shape))}</td>`
      + `<td class="dim">${F.escape(p.dtype)}</td><td class="num">${F.bytes(p.bytes)}</td></tr>`).join("");
    return `<table class="inner">${rows}<tr class="total"><td colspan="3">total</td>`
      + `<td class="num">${F.bytes(total)}</td></tr></table>`;
  }

  function source(node) {
    if (!node.source) return "";
    const short = node.source.split("/").slice(-2).join("/");
    const code = node.code ? `<pre class="code">${F.escape(node.code)}</pre>` : "";
    return `<span title="${F.escape(node.source)}">${F.escape(short)}</span>${code}`;
  }

  /* Quantization parameters: floats to 4 significant digits, long per-channel lists shortened. */
  function quant(q) {
    if (!q) return "";
    const short = (key, value) => {
      if (typeof value === "number" && !Number.isInteger(value)) return Number(value.toPrecision(4));
      if (Array.isArray(value) && value.length > 6) return [...value.slice(0, 6), `\u2026 ${value.length} values`];
      return value;
    };
    return Object.entries(q).map(([k, v]) => `${F.escape(k)}: ${mono(JSON.stringify(v, short))}`).join("<br>");
  }

  /* node: the JSON node; inputs: [{name, shapes, dtypes}]; change: "added" | "changed" | ... */
  function nodeHTML(node, inputs, change, palette) {
    const colour = palette[node.category] || palette.other;
    const inputRows = inputs.map((i) => `${nodeLink(i.name)} ${mono(F.shape(i.shapes[0]))}`
      + ` <span class="dim">${F.escape(i.dtypes[0] || "")}</span>`).join("<br>");
    const fusion = node.fusion_group
      ? `${mono(node.fusion_group)}${node.fusion_pattern ? " " + F.escape(node.fusion_pattern) : ""}` : "";
    return `<h2><span class="chip" style="background:${colour}">${F.escape(node.kind)}</span> `
      + `<span class="node-name">${F.escape(node.name)}</span>`
      + (change ? ` <span class="change ${change}">${change}</span>` : "") + "</h2>"
      + `<table class="facts">`
      + row("op", mono(node.label))
      + row("target", mono(node.target))
      + row("module", node.module ? mono(node.module) : "")
      + row("attributes", node.attrs ? mono(node.attrs) : "")
      + row("inputs", inputRows)
      + row("output", `<span class="output-shape">${tensorList(node.shapes, node.dtypes)}</span>`)
      + row("parameters", paramTable(node.params))
      + row("FLOPs", node.flops ? `${F.count(node.flops)} <span class="dim">(${node.flops.toLocaleString()})</span>` : "0")
      + row("source", source(node))
      + row("fusion", fusion)
      + row("ensemble", node.member != null ? `member m${node.member}`
        : node.wide ? `one wide layer for members ${node.wide.map((m) => "m" + m).join(", ")}` : "")
      + row("quantization", quant(node.quant))
      + "</table>";
  }

  function groupHTML(group, graph, collapsed) {
    const kinds = new Map();
    for (const id of group.members) kinds.set(graph.nodes[id].kind, (kinds.get(graph.nodes[id].kind) || 0) + 1);
    const histogram = [...kinds.entries()].sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${F.escape(k)} \u00d7${n}`).join(", ");
    const action = collapsed ? "expand" : "collapse";
    return `<h2><span class="chip module">module</span> <span class="node-name">${F.escape(group.path)}</span></h2>`
      + `<table class="facts">`
      + row("type", group.type ? mono(group.type) : "")
      + row("nodes", String(group.members.length))
      + row("ops", histogram)
      + row("FLOPs", F.count(group.flops))
      + row("parameters", F.bytes(group.paramBytes))
      + "</table>"
      + `<button class="group-action" data-group="${F.escape(group.path)}" data-action="${action}">`
      + `${action === "expand" ? "Expand" : "Collapse"} ${F.escape(group.path)}</button>`;
  }

  function statsRow(label, before, after, fmt) {
    const delta = before === after ? fmt(after) : `${fmt(before)} \u2192 <b>${fmt(after)}</b>`;
    return row(label, delta);
  }

  function detailValue(value) {
    if (Array.isArray(value) && !value.length) return "none";
    if (Array.isArray(value)) return `${value.length}: ${F.escape(value.slice(0, 12).join(", "))}${value.length > 12 ? ", \u2026" : ""}`;
    if (value && typeof value === "object") return mono(JSON.stringify(value));
    return F.escape(String(value));
  }

  function passHTML(pass, side) {
    const r = pass.record;
    const d = pass.diff;
    const lists = ["removed", "added", "changed", "fused", "folded"].map((kind) => {
      const names = d[kind] || [];
      if (!names.length) return "";
      const shown = names.slice(0, 40).map(nodeLink).join(", ");
      return row(kind, `<span class="change ${kind}">${names.length}</span> ${shown}${names.length > 40 ? ", \u2026" : ""}`);
    }).join("");
    const details = Object.entries(r.details || {}).map(([k, v]) => row(k, detailValue(v))).join("");
    return `<h2><span class="chip pass">pass</span> <span class="node-name">${F.escape(r.name)}</span>`
      + ` <span class="change ${r.changed ? "changed" : "unchanged"}">${r.changed ? "changed" : "no change"}</span></h2>`
      + `<p class="dim">showing the graph <b>${side}</b> this pass \u00b7 ${(r.seconds * 1000).toFixed(1)} ms`
      + (r.max_error !== null && r.max_error !== undefined ? ` \u00b7 verify error ${r.max_error.toExponential(2)}` : "")
      + "</p><table class=\"facts\">"
      + statsRow("nodes", r.before.nodes, r.after.nodes, String)
      + statsRow("param bytes", r.before.param_bytes, r.after.param_bytes, F.bytes)
      + statsRow("FLOPs", r.before.flops, r.after.flops, F.count)
      + details + lists + "</table>";
  }

  const pct = (share) => `${(100 * share).toFixed(share >= 0.1 ? 1 : 2)}%`;
  const rate = (gflops) => (gflops === null || gflops === undefined ? "\u2014" : gflops.toFixed(gflops >= 10 ? 1 : 2));

  /* The kernels computing one node (profile: the page's `profile` data; parts: [{kernel, part}]). */
  function nodeKernelsHTML(profile, parts) {
    if (!parts || !parts.length) {
      return `<h3>Measured time</h3><p class="dim">No kernel computes this node: folded at compile time,`
        + ` a view, or not compiled.</p>`;
    }
    const rows = parts.map(({ kernel, part }) => {
      const k = profile.kernels[kernel];
      const others = k.nodes.length - 1;
      const notes = [
        part < 1 ? `${Math.round(part * k.calls)} of its ${k.calls} calls compute this node (identical layers share it)` : "",
        others > 0 ? `it also computes ${others} other node(s): ${k.nodes.slice(0, 8).map(nodeLink).join(", ")}` : "",
      ].filter((n) => n);
      return `<tr><td>${mono(k.name)}</td><td class="num">${k.ms.toFixed(4)}</td><td class="num">${pct(k.share)}</td>`
        + `<td class="num">${rate(k.gflops)}</td></tr>`
        + (notes.length ? `<tr><td colspan="4" class="dim">${notes.join("; ")}</td></tr>` : "");
    }).join("");
    return `<h3>Measured time</h3><table class="inner kernel-rows"><tr><th>kernel</th><th>ms</th><th>share</th>`
      + `<th>GFLOP/s</th></tr>${rows}</table>`;
  }

  /* Every kernel of the profile, sorted by `key` ("ms", "gflops", "name", "calls"): a table with its nodes. */
  function kernelsHTML(profile, key, descending) {
    const value = (k) => (key === "name" ? k.name : k[key] ?? -1);
    const order = profile.kernels.map((k, i) => i).sort((a, b) => {
      const x = value(profile.kernels[a]), y = value(profile.kernels[b]);
      const c = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -c : c;
    });
    const head = [["name", "kernel"], ["calls", "calls"], ["ms", "ms"], ["ms", "share"], ["gflops", "GFLOP/s"]]
      .map(([k, label]) => `<th><button class="sort${k === key ? " active" : ""}" data-sort="${k}">${label}`
        + `${k === key && label !== "share" ? (descending ? " \u25be" : " \u25b4") : ""}</button></th>`).join("");
    const rows = order.map((i) => {
      const k = profile.kernels[i];
      const nodes = k.nodes.length ? k.nodes.slice(0, 6).map(nodeLink).join(", ") + (k.nodes.length > 6 ? ", \u2026" : "")
        : `<span class="dim">no graph node</span>`;
      return `<tr class="${k.nodes.length ? "" : "unmapped"}" data-kernel="${i}"><td>${mono(k.name)}<div class="kernel-nodes">${nodes}</div></td>`
        + `<td class="num">${k.calls}</td><td class="num">${k.ms.toFixed(4)}</td><td class="num">${pct(k.share)}</td>`
        + `<td class="num">${rate(k.gflops)}</td></tr>`;
    }).join("");
    const unmapped = profile.kernels.filter((k) => !k.nodes.length);
    const unmappedMs = unmapped.reduce((sum, k) => sum + k.ms, 0);
    const notes = (profile.notes || []).map((n) => `<p class="dim">${F.escape(n)}</p>`).join("");
    return `<h2><span class="chip pass">profile</span> <span class="node-name">kernels</span></h2>`
      + `<p class="dim">${profile.kernels.length} kernels${profile.target ? " on " + F.escape(profile.target) : ""},`
      + ` ${profile.kernel_ms.toFixed(3)} ms per instrumented run (mean of ${profile.runs})`
      + (profile.whole_ms ? `, ${profile.whole_ms.toFixed(3)} ms uninstrumented` : "")
      + ` \u00b7 ${unmapped.length} computing no graph node (layout, copies, the VM's own calls):`
      + ` ${pct(profile.kernel_ms > 0 ? unmappedMs / profile.kernel_ms : 0)}</p>`
      + `<table class="inner kernels"><tr>${head}</tr>${rows}</table>${notes}`;
  }

  return { nodeHTML, groupHTML, passHTML, nodeKernelsHTML, kernelsHTML };
})();
