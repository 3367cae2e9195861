/* Layered top-to-bottom layout of a directed graph (Sugiyama style), fast enough for 5,000 nodes.
 *
 *   1. layering: longest path from the sources, then sources pulled down next to their first user;
 *   2. edges spanning several layers get one dummy node per layer they cross (so they can bend
 *      around nodes); edges longer than MAX_SPAN layers are drawn directly instead;
 *   3. ordering: a few barycenter sweeps (down, up) reduce crossings;
 *   4. x placement: each sweep moves every node toward the mean x of its neighbours, keeping the
 *      layer's order and spacing, solved exactly by isotonic regression (pool adjacent violators).
 *
 * Input: count, widths/heights per node, edges [[u, v], ...] where u comes before v in a
 * topological order (edges against that order are laid out reversed). Output: centre x, top y,
 * and a polyline per edge.
 */
"use strict";

const GraphoptLayout = (() => {
  const LAYER_GAP = 34; // vertical space between layers
  const NODE_GAP = 20; // horizontal space between neighbouring nodes
  const DUMMY_WIDTH = 8; // width reserved for an edge passing through a layer
  const MAX_SPAN = 40; // longer edges are drawn without dummy nodes
  const DRIFT_WINDOW = 40; // layers on each side averaged to find the sideways creep

  function assignLayers(count, preds, succs) {
    const layer = new Int32Array(count);
    for (let v = 0; v < count; v++) {
      for (const u of preds[v]) layer[v] = Math.max(layer[v], layer[u] + 1);
    }
    for (let v = count - 1; v >= 0; v--) {
      if (preds[v].length === 0 && succs[v].length > 0) {
        let lowest = Infinity;
        for (const s of succs[v]) lowest = Math.min(lowest, layer[s]);
        layer[v] = Math.max(0, lowest - 1);
      }
    }
    return layer;
  }

  /* Isotonic regression with minimum gaps: x[i+1] - x[i] >= gap[i+1], minimising
   * sum weight[i] * (x[i] - target[i])^2. Rewritten as y = x - offset, y non-decreasing. */
  function placeRow(target, weight, gap) {
    const n = target.length;
    const offset = new Float64Array(n);
    for (let i = 1; i < n; i++) offset[i] = offset[i - 1] + gap[i];
    const blockW = [], blockSum = [], blockLen = [];
    for (let i = 0; i < n; i++) {
      blockW.push(weight[i]);
      blockSum.push(weight[i] * (target[i] - offset[i]));
      blockLen.push(1);
      while (blockW.length > 1) {
        const k = blockW.length - 1;
        if (blockSum[k - 1] / blockW[k - 1] <= blockSum[k] / blockW[k]) break;
        blockW[k - 1] += blockW[k];
        blockSum[k - 1] += blockSum[k];
        blockLen[k - 1] += blockLen[k];
        blockW.pop(); blockSum.pop(); blockLen.pop();
      }
    }
    const x = new Float64Array(n);
    let i = 0;
    for (let b = 0; b < blockW.length; b++) {
      const y = blockSum[b] / blockW[b];
      for (let k = 0; k < blockLen[b]; k++, i++) x[i] = y + offset[i];
    }
    return x;
  }

  /* extraAbove/extraBelow (optional): room a node needs above or below it (module frame titles). */
  /* Long chains of blocks creep sideways a little per block (a residual edge always passes on the
   * same side). Subtract a moving average of the layer centres: it removes the creep, while
   * neighbouring layers move by under a pixel relative to each other, so edges stay straight. */
  function removeDrift(layers, x) {
    const n = layers.length;
    if (n < 3) return;
    const prefix = new Float64Array(n + 1);
    layers.forEach((row, l) => {
      let sum = 0;
      for (const node of row) sum += x[node];
      prefix[l + 1] = prefix[l] + (row.length ? sum / row.length : 0);
    });
    const half = DRIFT_WINDOW;
    layers.forEach((row, l) => {
      const lo = Math.max(0, l - half), hi = Math.min(n, l + half + 1);
      const shift = (prefix[hi] - prefix[lo]) / (hi - lo);
      for (const node of row) x[node] -= shift;
    });
  }

  function layout(count, widths, heights, edges, extraAbove, extraBelow) {
    const preds = Array.from({ length: count }, () => []);
    const succs = Array.from({ length: count }, () => []);
    const oriented = edges.map(([u, v]) => (u < v ? [u, v, false] : [v, u, true]));
    for (const [u, v] of oriented) {
      if (u === v) continue;
      preds[v].push(u);
      succs[u].push(v);
    }
    const layerOf = assignLayers(count, preds, succs);

    // Nodes of the layered graph: real nodes 0..count-1, then dummy nodes.
    const layerOfAll = Array.from(layerOf);
    const widthAll = Array.from(widths);
    const up = Array.from({ length: count }, () => []); // neighbours in the layer above
    const down = Array.from({ length: count }, () => []);
    const chains = []; // per edge: the node sequence from top to bottom
    for (const [u, v, reversed] of oriented) {
      const span = layerOf[v] - layerOf[u];
      const chain = [u];
      if (span > 1 && span <= MAX_SPAN) {
        for (let l = layerOf[u] + 1; l < layerOf[v]; l++) {
          const d = layerOfAll.length;
          layerOfAll.push(l);
          widthAll.push(DUMMY_WIDTH);
          up.push([]);
          down.push([]);
          chain.push(d);
        }
      }
      chain.push(v);
      for (let k = 0; k + 1 < chain.length; k++) {
        if (layerOfAll[chain[k + 1]] - layerOfAll[chain[k]] !== 1) continue; // long edge: no pull
        down[chain[k]].push(chain[k + 1]);
        up[chain[k + 1]].push(chain[k]);
      }
      chains.push({ chain, reversed });
    }
    const total = layerOfAll.length;
    let layerCount = 0;
    for (let i = 0; i < total; i++) layerCount = Math.max(layerCount, layerOfAll[i] + 1);
    const layers = Array.from({ length: layerCount }, () => []);
    for (let i = 0; i < total; i++) layers[layerOfAll[i]].push(i); // real nodes first, in topo order

    // Ordering: barycenter sweeps on positions within the layer.
    const pos = new Float64Array(total);
    const renumber = (row) => row.forEach((node, i) => { pos[node] = i; });
    layers.forEach(renumber);
    const sweep = (row, neighbours) => {
      const key = new Float64Array(row.length);
      row.forEach((node, i) => {
        const ns = neighbours[node];
        if (ns.length === 0) { key[i] = pos[node]; return; }
        let sum = 0;
        for (const m of ns) sum += pos[m];
        key[i] = sum / ns.length;
      });
      const idx = row.map((_, i) => i).sort((a, b) => key[a] - key[b] || a - b);
      const sorted = idx.map((i) => row[i]);
      for (let i = 0; i < row.length; i++) row[i] = sorted[i];
      renumber(row);
    };
    for (let round = 0; round < 2; round++) {
      for (let l = 1; l < layerCount; l++) sweep(layers[l], up);
      for (let l = layerCount - 2; l >= 0; l--) sweep(layers[l], down);
    }

    // x placement: start packed, then pull toward neighbours row by row.
    const x = new Float64Array(total);
    for (const row of layers) {
      let cursor = 0;
      for (const node of row) { x[node] = cursor + widthAll[node] / 2; cursor += widthAll[node] + NODE_GAP; }
      const shift = cursor / 2;
      for (const node of row) x[node] -= shift;
    }
    const placeLayer = (row, neighbourLists) => {
      const n = row.length;
      const target = new Float64Array(n), weight = new Float64Array(n), gap = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const node = row[i];
        let sum = 0, k = 0;
        for (const list of neighbourLists) for (const m of list[node]) { sum += x[m]; k++; }
        target[i] = k ? sum / k : x[node];
        weight[i] = k ? (node >= count ? 2 : 1) : 0.05; // keep dummy chains (long edges) straight
        if (i > 0) gap[i] = (widthAll[row[i - 1]] + widthAll[node]) / 2 + NODE_GAP;
      }
      const placed = placeRow(target, weight, gap);
      for (let i = 0; i < n; i++) x[row[i]] = placed[i];
    };
    for (let round = 0; round < 3; round++) {
      for (let l = 1; l < layerCount; l++) placeLayer(layers[l], [up]);
      for (let l = layerCount - 2; l >= 0; l--) placeLayer(layers[l], [down]);
    }
    for (let l = 0; l < layerCount; l++) placeLayer(layers[l], [up, down]);
    removeDrift(layers, x);

    // y: each layer as tall as its tallest node.
    const layerTop = new Float64Array(layerCount + 1);
    const layerHeight = new Float64Array(layerCount);
    const above = new Float64Array(layerCount + 1), below = new Float64Array(layerCount + 1);
    for (let v = 0; v < count; v++) {
      const l = layerOf[v];
      layerHeight[l] = Math.max(layerHeight[l], heights[v]);
      if (extraAbove) above[l] = Math.max(above[l], extraAbove[v]);
      if (extraBelow) below[l] = Math.max(below[l], extraBelow[v]);
    }
    layerTop[0] = above[0];
    for (let l = 0; l < layerCount; l++) {
      layerTop[l + 1] = layerTop[l] + (layerHeight[l] || 10) + LAYER_GAP + below[l] + above[l + 1];
    }

    let minX = Infinity, maxX = -Infinity;
    for (let i = 0; i < total; i++) {
      minX = Math.min(minX, x[i] - widthAll[i] / 2);
      maxX = Math.max(maxX, x[i] + widthAll[i] / 2);
    }
    if (!isFinite(minX)) { minX = 0; maxX = 0; }
    for (let i = 0; i < total; i++) x[i] -= minX;

    const cx = new Float64Array(count), top = new Float64Array(count);
    for (let v = 0; v < count; v++) {
      cx[v] = x[v];
      top[v] = layerTop[layerOf[v]] + (layerHeight[layerOf[v]] - heights[v]) / 2;
    }
    const routes = chains.map(({ chain, reversed }, e) => {
      const pts = [];
      chain.forEach((node, k) => {
        const l = layerOfAll[node];
        if (k === 0) pts.push(x[node], top[node] + heights[node]);
        else if (k === chain.length - 1) pts.push(x[node], top[node]);
        else pts.push(x[node], layerTop[l], x[node], layerTop[l] + layerHeight[l]);
      });
      return { edge: e, reversed, pts, bbox: bounds(pts) };
    });
    // Real nodes of each layer, left to right, for hit testing.
    const rows = layers.map((row) => row.filter((n) => n < count));
    return {
      x: cx, top, layer: layerOf, rows, layerTop, layerHeight, routes,
      width: maxX - minX, height: (layerTop[layerCount] || 0) + below[Math.max(layerCount - 1, 0)],
    };
  }

  function bounds(pts) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let i = 0; i < pts.length; i += 2) {
      x0 = Math.min(x0, pts[i]); x1 = Math.max(x1, pts[i]);
      y0 = Math.min(y0, pts[i + 1]); y1 = Math.max(y1, pts[i + 1]);
    }
    return [x0, y0, x1, y1];
  }

  return { layout };
})();
