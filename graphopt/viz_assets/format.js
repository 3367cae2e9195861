/* Small formatting and colour helpers shared by the canvas and the side panels. */
"use strict";

const GraphoptFormat = (() => {
  const shape = (s) => (s && s.length ? s.join("\u00d7") : "scalar");

  function bytes(n) {
    if (!n) return "0 B";
    const units = ["B", "KiB", "MiB", "GiB"];
    let v = n, u = 0;
    while (Math.abs(v) >= 1024 && u < units.length - 1) { v /= 1024; u++; }
    return u ? `${v.toFixed(1)} ${units[u]}` : `${v} B`;
  }

  function count(n) {
    if (!n) return "0";
    const units = ["", "K", "M", "G", "T"];
    let v = n, u = 0;
    while (Math.abs(v) >= 1000 && u < units.length - 1) { v /= 1000; u++; }
    return u ? `${v.toFixed(v < 10 ? 2 : 1)}${units[u]}` : `${v}`;
  }

  const escape = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  /* A pale fill for a category colour (mixed with white). */
  function tint(hex, amount) {
    const v = parseInt(hex.slice(1), 16);
    const mix = (c) => Math.round(c + (255 - c) * (1 - amount));
    return `rgb(${mix(v >> 16)}, ${mix((v >> 8) & 255)}, ${mix(v & 255)})`;
  }

  function hslTint(color, lightness) {
    return color.replace(/(\d+)%\)$/, `${lightness}%)`);
  }

  return { shape, bytes, count, escape, tint, hslTint };
})();
