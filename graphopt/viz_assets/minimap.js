/* An overview of the whole graph in a corner: where the view is; click or drag to go there.
 *
 * The boxes are drawn once per layout into an offscreen canvas; each frame only copies it and
 * draws the viewport rectangle. A very tall graph becomes a narrow strip, like a scrollbar.
 */
"use strict";

class GraphoptMinimap {
  constructor(canvas, renderer) {
    this.canvas = canvas;
    this.renderer = renderer;
    this.ctx = canvas.getContext("2d");
    this.cache = null;
    const jump = (e) => {
      if (!this.cache) return;
      const rect = canvas.getBoundingClientRect();
      const gx = (e.clientX - rect.left - this.offsetX) / this.scale;
      const gy = (e.clientY - rect.top - this.offsetY) / this.scale;
      renderer.centerOn(gx, gy);
    };
    let dragging = false;
    canvas.addEventListener("mousedown", (e) => { dragging = true; jump(e); e.stopPropagation(); });
    window.addEventListener("mousemove", (e) => { if (dragging) jump(e); });
    window.addEventListener("mouseup", () => { dragging = false; });
  }

  setScene(scene) {
    const maxW = 150, maxH = 220;
    const ratio = window.devicePixelRatio || 1;
    this.scale = Math.min(maxW / Math.max(scene.width, 1), maxH / Math.max(scene.height, 1));
    const w = Math.max(24, Math.ceil(scene.width * this.scale) + 8);
    const h = Math.ceil(scene.height * this.scale) + 8;
    this.offsetX = (w - scene.width * this.scale) / 2;
    this.offsetY = 4;
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${h}px`;
    this.canvas.width = w * ratio;
    this.canvas.height = h * ratio;
    this.cssW = w;
    this.cssH = h;
    const cache = document.createElement("canvas");
    cache.width = this.canvas.width;
    cache.height = this.canvas.height;
    const ctx = cache.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    for (const b of scene.boxes) {
      ctx.fillStyle = b.group ? "#94a3b8" : b.stroke;
      ctx.fillRect(this.offsetX + b.x * this.scale, this.offsetY + b.y * this.scale,
        Math.max(1, b.w * this.scale), Math.max(1, b.h * this.scale));
    }
    this.cache = cache;
    this.draw();
  }

  draw() {
    if (!this.cache) return;
    const ctx = this.ctx;
    const ratio = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(this.cache, 0, 0);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const r = this.renderer;
    const [x0, y0] = r.toGraph(0, 0);
    const [x1, y1] = r.toGraph(r.cssWidth, r.cssHeight);
    const scene = r.scene;
    this.canvas.hidden = x0 <= 0 && y0 <= 0 && x1 >= scene.width && y1 >= scene.height; // all in view
    // The view's rectangle, clipped to the minimap so all four sides stay visible.
    const left = Math.max(1, this.offsetX + x0 * this.scale), top = Math.max(1, this.offsetY + y0 * this.scale);
    const right = Math.min(this.cssW - 1, this.offsetX + x1 * this.scale);
    const bottom = Math.min(this.cssH - 1, this.offsetY + y1 * this.scale);
    ctx.strokeStyle = "#2563eb";
    ctx.lineWidth = 1.5;
    ctx.fillStyle = "rgba(37, 99, 235, 0.12)";
    const w = Math.max(4, right - left), h = Math.max(4, bottom - top);
    ctx.fillRect(left, top, w, h);
    ctx.strokeRect(left, top, w, h);
  }
}
