/* Canvas 2D renderer: draws a laid-out scene, pans and zooms, and finds what is under the pointer.
 *
 * Only what intersects the viewport is drawn, and zoomed far out the boxes lose their text, so a
 * frame of a 5,000-node graph costs a few milliseconds. Drawing is coalesced into one
 * requestAnimationFrame per change.
 */
"use strict";

class GraphoptRenderer {
  constructor(canvas, callbacks) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.callbacks = callbacks; // {onClick(hit), onHover(hit)}
    this.scene = null;
    this.view = { scale: 1, tx: 0, ty: 0 };
    this.pending = false;
    this.resize();
    this.attachEvents();
  }

  measure(text, font) {
    this.ctx.font = font;
    return this.ctx.measureText(text).width;
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const rect = this.canvas.getBoundingClientRect();
    this.cssWidth = Math.max(1, rect.width);
    this.cssHeight = Math.max(1, rect.height);
    this.canvas.width = Math.round(this.cssWidth * ratio);
    this.canvas.height = Math.round(this.cssHeight * ratio);
    this.ratio = ratio;
    this.requestDraw();
  }

  /* scene: {boxes: [{x, y, w, h, ...}], routes, frames, width, height} in graph coordinates. */
  setScene(scene) {
    this.scene = scene;
    this.requestDraw();
  }

  fit() {
    if (!this.scene) return;
    const margin = 30;
    const sx = (this.cssWidth - 2 * margin) / Math.max(this.scene.width, 1);
    const sy = (this.cssHeight - 2 * margin) / Math.max(this.scene.height, 1);
    // Tall graphs are fitted to the width (readable text) and start at the top.
    const scale = Math.min(1.2, Math.max(Math.min(sx, sy), Math.min(sx, 0.75)));
    this.view.scale = scale;
    this.view.tx = (this.cssWidth - this.scene.width * scale) / 2;
    this.view.ty = margin;
    if (this.scene.height * scale < this.cssHeight - 2 * margin) {
      this.view.ty = (this.cssHeight - this.scene.height * scale) / 2;
    }
    this.requestDraw();
  }

  /* Put graph point (gx, gy) at screen point (sx, sy); default: the centre of the canvas. */
  centerOn(gx, gy, sx, sy) {
    const s = this.view.scale;
    this.view.tx = (sx ?? this.cssWidth / 2) - gx * s;
    this.view.ty = (sy ?? this.cssHeight / 2) - gy * s;
    this.requestDraw();
  }

  toScreen(gx, gy) {
    return [gx * this.view.scale + this.view.tx, gy * this.view.scale + this.view.ty];
  }

  toGraph(sx, sy) {
    return [(sx - this.view.tx) / this.view.scale, (sy - this.view.ty) / this.view.scale];
  }

  zoomAt(factor, sx, sy) {
    const [gx, gy] = this.toGraph(sx, sy);
    this.view.scale = Math.min(4, Math.max(0.02, this.view.scale * factor));
    this.centerOn(gx, gy, sx, sy);
  }

  requestDraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  /* What is at a screen point: {box: index} or {frame: path} or null. */
  hitTest(sx, sy) {
    if (!this.scene) return null;
    const [gx, gy] = this.toGraph(sx, sy);
    const { rows, layerTop, layerHeight } = this.scene.layout;
    let lo = 0, hi = rows.length - 1;
    while (lo < hi) { // last layer whose top is <= gy
      const mid = (lo + hi + 1) >> 1;
      if (layerTop[mid] <= gy) lo = mid; else hi = mid - 1;
    }
    if (rows.length && gy <= layerTop[lo] + layerHeight[lo]) {
      for (const index of rows[lo]) {
        const b = this.scene.boxes[index];
        if (gx >= b.x && gx <= b.x + b.w && gy >= b.y && gy <= b.y + b.h) return { box: index };
      }
    }
    for (const frame of this.scene.frames) { // a frame's title bar collapses it
      if (gx >= frame.x && gx <= frame.x + frame.w && gy >= frame.y && gy <= frame.y + frame.titleH) {
        return { frame: frame.path };
      }
    }
    return null;
  }

  attachEvents() {
    const canvas = this.canvas;
    let drag = null;
    canvas.addEventListener("mousedown", (e) => {
      drag = { x: e.clientX, y: e.clientY, tx: this.view.tx, ty: this.view.ty, moved: false };
    });
    window.addEventListener("mousemove", (e) => {
      if (drag) {
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
        if (drag.moved) {
          this.view.tx = drag.tx + dx;
          this.view.ty = drag.ty + dy;
          canvas.style.cursor = "grabbing";
          this.requestDraw();
        }
        return;
      }
      if (e.target !== canvas) return;
      const rect = canvas.getBoundingClientRect();
      const hit = this.hitTest(e.clientX - rect.left, e.clientY - rect.top);
      canvas.style.cursor = hit ? "pointer" : "grab";
      this.callbacks.onHover?.(hit, e);
    });
    window.addEventListener("mouseup", (e) => {
      if (!drag) return;
      const wasClick = !drag.moved;
      drag = null;
      canvas.style.cursor = "grab";
      if (wasClick && e.target === canvas) {
        const rect = canvas.getBoundingClientRect();
        this.callbacks.onClick?.(this.hitTest(e.clientX - rect.left, e.clientY - rect.top));
      }
    });
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const rect = canvas.getBoundingClientRect();
      if (e.ctrlKey || e.metaKey || !e.shiftKey) {
        this.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - rect.left, e.clientY - rect.top);
      } else {
        this.view.tx -= e.deltaY;
        this.requestDraw();
      }
    }, { passive: false });
    window.addEventListener("resize", () => this.resize());
  }

  draw() {
    const ctx = this.ctx;
    ctx.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
    ctx.fillStyle = "#f8fafc";
    ctx.fillRect(0, 0, this.cssWidth, this.cssHeight);
    if (!this.scene) return;
    const { scale, tx, ty } = this.view;
    ctx.setTransform(this.ratio * scale, 0, 0, this.ratio * scale, this.ratio * tx, this.ratio * ty);
    const [vx0, vy0] = this.toGraph(0, 0);
    const [vx1, vy1] = this.toGraph(this.cssWidth, this.cssHeight);
    const visible = (x0, y0, x1, y1) => x1 >= vx0 && x0 <= vx1 && y1 >= vy0 && y0 <= vy1;
    const detailed = scale >= 0.4;

    for (const f of this.scene.frames) {
      if (!visible(f.x, f.y, f.x + f.w, f.y + f.h)) continue;
      this.drawFrame(f, detailed);
    }
    this.drawEdges(visible, scale);
    if (scale < 0.25) { this.drawBoxesFar(visible); this.callbacks.onDraw?.(); return; }
    for (const b of this.scene.boxes) {
      if (!visible(b.x - 6, b.y - 6, b.x + b.w + 6, b.y + b.h + 6)) continue;
      this.drawBox(b, detailed);
    }
    this.callbacks.onDraw?.();
  }

  /* Zoomed far out: plain rectangles, one path per colour; marked boxes keep their outline. */
  drawBoxesFar(visible) {
    const ctx = this.ctx;
    const byColour = new Map();
    const marked = [];
    for (const b of this.scene.boxes) {
      if (!visible(b.x, b.y, b.x + b.w, b.y + b.h)) continue;
      const colour = b.group ? "#94a3b8" : b.stroke;
      if (!byColour.has(colour)) byColour.set(colour, new Path2D());
      byColour.get(colour).rect(b.x, b.y, b.w, b.h);
      if (b.selected || b.outline || b.glow) marked.push(b);
    }
    for (const [colour, path] of byColour) {
      ctx.fillStyle = colour;
      ctx.fill(path);
    }
    for (const b of marked) {
      ctx.strokeStyle = b.selected ? "#0f172a" : b.outline || "#facc15";
      ctx.lineWidth = 6;
      ctx.strokeRect(b.x - 4, b.y - 4, b.w + 8, b.h + 8);
    }
  }

  drawFrame(f, detailed) {
    const ctx = this.ctx;
    ctx.fillStyle = f.depth % 2 ? "rgba(100,116,139,0.07)" : "rgba(100,116,139,0.045)";
    ctx.strokeStyle = f.highlight || "rgba(100,116,139,0.45)";
    ctx.lineWidth = f.highlight ? 2 : 1;
    roundRect(ctx, f.x, f.y, f.w, f.h, 8);
    ctx.fill();
    ctx.stroke();
    if (!detailed) return;
    ctx.fillStyle = "#475569";
    ctx.font = "600 11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.fillText("\u25BE " + f.title, f.x + 8, f.y + f.titleH / 2, f.w - 16);
  }

  drawEdges(visible, scale) {
    const ctx = this.ctx;
    const selected = this.scene.selectedBox;
    const normal = new Path2D(), strong = new Path2D();
    const arrows = [];
    for (const route of this.scene.routes) {
      const [x0, y0, x1, y1] = route.bbox;
      if (!visible(x0 - 10, y0 - 10, x1 + 10, y1 + 10)) continue;
      const touches = selected != null && (route.from === selected || route.to === selected);
      tracePath(touches ? strong : normal, route.pts);
      arrows.push([route, touches]);
    }
    ctx.lineWidth = Math.max(1, 1.2 / Math.max(scale, 0.5));
    ctx.strokeStyle = "#94a3b8";
    ctx.stroke(normal);
    ctx.strokeStyle = "#0f172a";
    ctx.lineWidth = 2;
    ctx.stroke(strong);
    if (scale < 0.25) return;
    for (const [route, touches] of arrows) {
      const p = route.pts;
      // The arrow points at the consumer: the last point, or the first for a reversed edge.
      const [hx, hy, dir] = route.reversed ? [p[0], p[1], -1] : [p[p.length - 2], p[p.length - 1], 1];
      ctx.fillStyle = touches ? "#0f172a" : "#94a3b8";
      ctx.beginPath();
      ctx.moveTo(hx, hy);
      ctx.lineTo(hx - 4, hy - 7 * dir);
      ctx.lineTo(hx + 4, hy - 7 * dir);
      ctx.closePath();
      ctx.fill();
    }
  }

  drawBox(b, detailed) {
    const ctx = this.ctx;
    if (b.group) { // a collapsed module: a stack of cards
      ctx.fillStyle = "#e2e8f0";
      ctx.strokeStyle = "#94a3b8";
      ctx.lineWidth = 1;
      roundRect(ctx, b.x + 4, b.y + 4, b.w, b.h, 7);
      ctx.fill();
      ctx.stroke();
    }
    if (b.glow) {
      ctx.fillStyle = b.glow;
      roundRect(ctx, b.x - 5, b.y - 5, b.w + 10, b.h + 10, 10);
      ctx.fill();
    }
    ctx.fillStyle = b.fill;
    ctx.strokeStyle = b.stroke;
    ctx.lineWidth = b.selected ? 3 : b.outline ? 2.5 : 1.2;
    if (b.outline) ctx.strokeStyle = b.outline;
    if (b.selected) ctx.strokeStyle = "#0f172a";
    roundRect(ctx, b.x, b.y, b.w, b.h, 6);
    ctx.fill();
    ctx.stroke();
    if (!b.group) { // colour bar on the left: the op category
      ctx.fillStyle = b.stroke;
      roundRect(ctx, b.x, b.y, 5, b.h, 3);
      ctx.fill();
    }
    if (!detailed) return;
    ctx.textBaseline = "middle";
    ctx.font = "600 12px system-ui, sans-serif";
    ctx.fillStyle = "#0f172a";
    const left = b.x + 11;
    const room = b.w - 16;
    ctx.fillText(b.line1, left, b.y + 14, room);
    if (b.line1b) {
      const w = Math.min(this.measure(b.line1, "600 12px system-ui, sans-serif"), room);
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillStyle = "#64748b";
      if (room - w > 24) ctx.fillText(b.line1b, left + w + 6, b.y + 14, room - w - 6);
    }
    ctx.font = "11px ui-monospace, monospace";
    ctx.fillStyle = "#334155";
    ctx.fillText(b.line2, left, b.y + 31, room);
    if (b.badge) {
      ctx.font = "600 10px system-ui, sans-serif";
      const w = this.measure(b.badge, ctx.font) + 10;
      ctx.fillStyle = b.outline || "#475569";
      roundRect(ctx, b.x + b.w - w - 4, b.y - 8, w, 15, 7);
      ctx.fill();
      ctx.fillStyle = "#ffffff";
      ctx.fillText(b.badge, b.x + b.w - w + 1, b.y - 0.5);
    }
  }
}

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}

/* A polyline through the route's points, with smooth bends between layers. */
function tracePath(path, p) {
  path.moveTo(p[0], p[1]);
  for (let i = 2; i < p.length; i += 2) {
    const x0 = p[i - 2], y0 = p[i - 1], x1 = p[i], y1 = p[i + 1];
    if (x0 === x1) { path.lineTo(x1, y1); continue; }
    const my = (y0 + y1) / 2;
    path.bezierCurveTo(x0, my, x1, my, x1, y1);
  }
}
