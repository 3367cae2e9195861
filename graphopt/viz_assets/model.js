/* The explorer's model of one graph state: module hierarchy, collapse state, the visible graph.
 *
 * Modules come from each node's "scope" (the dotted module path that contains it). A group that
 * holds a single node, or only one child group and nothing else, is dissolved: it would be a box
 * that shows nothing new. A collapsed group is drawn as one box carrying its aggregate FLOPs and
 * parameter bytes; edges into and out of it are merged.
 */
"use strict";

const GraphoptModel = (() => {
  /* groups: Map path -> {path, type, parent, depth, members: [node ids], children: [paths]} */
  function buildGroups(graph, shown) {
    const raw = new Map();
    const ensure = (path) => {
      if (raw.has(path)) return raw.get(path);
      const cut = path.lastIndexOf(".");
      const group = { path, parentPath: cut < 0 ? "" : path.slice(0, cut), members: [], childPaths: new Set() };
      raw.set(path, group);
      if (group.parentPath) ensure(group.parentPath).childPaths.add(path);
      return group;
    };
    const prefixes = (scope) => scope.split(".").map((_, k, parts) => parts.slice(0, k + 1).join("."));
    for (const node of graph.nodes) {
      if (!shown[node.id] || !node.scope) continue;
      for (const path of prefixes(node.scope)) ensure(path).members.push(node.id);
    }
    // Totals count hidden constants too: an exported graph keeps its weights in get_attr nodes.
    // A constant a pass created at the top level counts in the module of its first user.
    const firstUser = new Map();
    for (const [u, v] of graph.edges) if (!firstUser.has(u)) firstUser.set(u, v);
    for (const node of graph.nodes) {
      const scope = node.scope || (node.op === "get_attr" && firstUser.has(node.id)
        ? graph.nodes[firstUser.get(node.id)].scope : "");
      if (!scope) continue;
      for (const path of prefixes(scope)) {
        const group = raw.get(path);
        if (!group) continue;
        group.flops = (group.flops || 0) + node.flops;
        group.paramBytes = (group.paramBytes || 0) + node.param_bytes;
      }
    }
    // Keep a group only if it shows something its single child does not.
    const kept = new Map();
    for (const group of raw.values()) {
      if (group.members.length < 2) continue;
      const children = [...group.childPaths].map((p) => raw.get(p));
      const sameAsChild = children.length === 1 && children[0].members.length === group.members.length;
      if (sameAsChild) continue;
      kept.set(group.path, {
        path: group.path, type: graph.modules[group.path] || "", members: group.members,
        parent: null, depth: 0, children: [], flops: group.flops || 0, paramBytes: group.paramBytes || 0,
      });
    }
    for (const group of kept.values()) {
      let p = raw.get(group.path).parentPath;
      while (p && !kept.has(p)) p = raw.get(p).parentPath;
      group.parent = p || null;
      if (group.parent) kept.get(group.parent).children.push(group.path);
    }
    for (const group of kept.values()) {
      let depth = 1;
      for (let p = group.parent; p; p = kept.get(p).parent) depth++;
      group.depth = depth;
    }
    return kept;
  }

  /* Ancestor chain (outermost first) of every node among the kept groups. */
  function ancestorsOf(graph, groups) {
    const chains = new Array(graph.nodes.length);
    for (const node of graph.nodes) {
      const chain = [];
      if (node.scope) {
        const parts = node.scope.split(".");
        for (let k = 1; k <= parts.length; k++) {
          const path = parts.slice(0, k).join(".");
          if (groups.has(path)) chain.push(path);
        }
      }
      chains[node.id] = chain;
    }
    return chains;
  }

  class State {
    constructor(graph, options) {
      this.graph = graph;
      this.byName = new Map(graph.nodes.map((n) => [n.name, n]));
      this.preds = graph.nodes.map(() => []);
      this.succs = graph.nodes.map(() => []);
      for (const [u, v] of graph.edges) { this.preds[v].push(u); this.succs[u].push(v); }
      this.setShowConstants(options.showConstants);
    }

    setShowConstants(show) {
      this.showConstants = show;
      this.shown = this.graph.nodes.map((n) => show || n.op !== "get_attr");
      this.groups = buildGroups(this.graph, this.shown);
      this.ancestors = ancestorsOf(this.graph, this.groups);
    }

    /* Which box shows node id: its outermost collapsed group, or the node itself (null if hidden). */
    representative(id, collapsed) {
      if (!this.shown[id]) return null;
      for (const path of this.ancestors[id]) if (collapsed.has(path)) return "g:" + path;
      return "n:" + id;
    }

    countVisible(collapsed) {
      const seen = new Set();
      for (const node of this.graph.nodes) {
        const rep = this.representative(node.id, collapsed);
        if (rep) seen.add(rep);
      }
      return seen.size;
    }

    /* Collapse the deepest module level that keeps the picture under `budget` boxes; if that
     * leaves almost nothing (one module wrapping the whole model), open one more level. */
    autoCollapse(budget) {
      const shownCount = this.shown.filter(Boolean).length;
      if (shownCount <= budget || this.groups.size === 0) return new Set();
      let maxDepth = 0;
      for (const g of this.groups.values()) maxDepth = Math.max(maxDepth, g.depth);
      const atDepth = (depth) => new Set([...this.groups.values()].filter((g) => g.depth === depth).map((g) => g.path));
      let depth = 1;
      while (depth < maxDepth && this.countVisible(atDepth(depth + 1)) <= budget) depth++;
      if (depth < maxDepth && this.countVisible(atDepth(depth)) < 6) depth++;
      return atDepth(depth);
    }

    /* The graph to lay out: items (nodes or collapsed groups) in topological order, merged edges. */
    visibleGraph(collapsed) {
      const items = new Map(); // key -> item
      const repOf = new Array(this.graph.nodes.length);
      for (const node of this.graph.nodes) {
        const key = this.representative(node.id, collapsed);
        repOf[node.id] = key;
        if (!key || items.has(key)) continue;
        items.set(key, key.startsWith("g:")
          ? { key, group: this.groups.get(key.slice(2)), first: node.id }
          : { key, node, first: node.id });
      }
      const list = [...items.values()].sort((a, b) => a.first - b.first);
      list.forEach((item, i) => { item.index = i; });
      const edgeSet = new Set();
      const edges = [];
      for (const [u, v] of this.graph.edges) {
        const a = repOf[u], b = repOf[v];
        if (!a || !b || a === b) continue;
        const ia = items.get(a).index, ib = items.get(b).index;
        const key = ia * list.length + ib;
        if (edgeSet.has(key)) continue;
        edgeSet.add(key);
        edges.push([ia, ib]);
      }
      return { items: list, edges, repOf };
    }
  }

  /* Case-insensitive search over name, op kind, op label and module path; best matches first. */
  function search(graph, query, limit) {
    const q = query.trim().toLowerCase();
    if (!q) return [];
    const scored = [];
    for (const node of graph.nodes) {
      const name = node.name.toLowerCase();
      let score = -1;
      if (name === q) score = 0;
      else if (name.startsWith(q)) score = 1;
      else if (node.kind.toLowerCase() === q) score = 2;
      else if (name.includes(q)) score = 3;
      else if (node.kind.toLowerCase().includes(q) || node.label.toLowerCase().includes(q)) score = 4;
      else if ((node.module || "").toLowerCase().includes(q)) score = 5;
      if (score >= 0) scored.push([score, node.id]);
    }
    scored.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    return scored.slice(0, limit).map(([, id]) => graph.nodes[id]);
  }

  return { State, search };
})();
