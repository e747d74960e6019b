// The handout page's own script (comparison/handout.py inlines it): the code view switch and
// the turning 3-D surfaces. Without it the page is still whole: both code columns and the
// static figures.
(function () {
  "use strict";
  var KEY = "functional-fit.handout.code";

  // Code: torch, both side by side, or JAX, for every block of the page; kept across reloads.
  function setView(view, keep) {
    document.documentElement.dataset.code = view;
    var radios = document.querySelectorAll('input[name="codeview"]');
    for (var i = 0; i < radios.length; i++) radios[i].checked = radios[i].value === view;
    if (keep) { try { localStorage.setItem(KEY, view); } catch (e) { /* storage off: this visit only */ } }
  }
  var saved = null;
  try { saved = localStorage.getItem(KEY); } catch (e) { saved = null; }
  setView(saved === "torch" || saved === "jax" ? saved : "both", false);
  document.addEventListener("change", function (ev) {
    if (ev.target && ev.target.name === "codeview") setView(ev.target.value, true);
  });

  // The 3-D surfaces: drag, or the arrow keys on the focused canvas, to turn them.
  function floats(b64) {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  }
  function colour(u) {
    var stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    var x = Math.max(0, Math.min(1, u)) * (stops.length - 1), i = Math.min(3, Math.floor(x)), f = x - i;
    var c = stops[i].map(function (v, j) { return Math.round(v + f * (stops[i + 1][j] - v)); });
    return "rgb(" + c.join(",") + ")";
  }
  function surface(canvas, data) {
    var G = data.grid, z = floats(data.z), lo = Infinity, hi = -Infinity;
    for (var i = 0; i < z.length; i++) { lo = Math.min(lo, z[i]); hi = Math.max(hi, z[i]); }
    var view = {azimuth: -0.9, elevation: 0.55}, ctx = canvas.getContext("2d");
    function project(i, j) {  // grid point -> [screen x, screen y, depth]
      var x = 2 * i / (G - 1) - 1, y = 2 * j / (G - 1) - 1, h = 1.3 * (z[j * G + i] - lo) / (hi - lo) - 0.65;
      var ca = Math.cos(view.azimuth), sa = Math.sin(view.azimuth);
      var ce = Math.cos(view.elevation), se = Math.sin(view.elevation);
      var xr = x * ca - y * sa, yr = x * sa + y * ca;
      var s = Math.min(canvas.width, canvas.height) * 0.33;
      return [canvas.width / 2 + s * xr, canvas.height / 2 - s * (h * ce - yr * se), yr * ce + h * se];
    }
    function draw() {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      var quads = [];
      for (var j = 0; j < G - 1; j++) {
        for (var i = 0; i < G - 1; i++) {
          var q = [project(i, j), project(i + 1, j), project(i + 1, j + 1), project(i, j + 1)];
          var mean = (z[j * G + i] + z[j * G + i + 1] + z[(j + 1) * G + i + 1] + z[(j + 1) * G + i]) / 4;
          quads.push({q: q, depth: (q[0][2] + q[1][2] + q[2][2] + q[3][2]) / 4, u: (mean - lo) / (hi - lo)});
        }
      }
      quads.sort(function (a, b) { return b.depth - a.depth; });  // far first
      ctx.lineWidth = 0.4; ctx.strokeStyle = "rgba(29,35,48,0.35)";
      quads.forEach(function (d) {
        ctx.beginPath(); ctx.moveTo(d.q[0][0], d.q[0][1]);
        for (var k = 1; k < 4; k++) ctx.lineTo(d.q[k][0], d.q[k][1]);
        ctx.closePath(); ctx.fillStyle = colour(d.u); ctx.fill(); ctx.stroke();
      });
      canvas.dataset.azimuth = view.azimuth.toFixed(3);
      canvas.dataset.elevation = view.elevation.toFixed(3);
    }
    function turn(da, de) {
      view.azimuth += da;
      view.elevation = Math.max(-1.5, Math.min(1.5, view.elevation + de));
      draw();
    }
    var drag = null;
    canvas.addEventListener("pointerdown", function (ev) {
      drag = [ev.clientX, ev.clientY]; canvas.setPointerCapture(ev.pointerId);
    });
    canvas.addEventListener("pointermove", function (ev) {
      if (!drag) return;
      turn((ev.clientX - drag[0]) * 0.01, (ev.clientY - drag[1]) * 0.01);
      drag = [ev.clientX, ev.clientY];
    });
    canvas.addEventListener("pointerup", function () { drag = null; });
    canvas.addEventListener("keydown", function (ev) {
      var keys = {ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, 0.1], ArrowDown: [0, -0.1]};
      if (!(ev.key in keys)) return;
      turn(keys[ev.key][0], keys[ev.key][1]);
      ev.preventDefault();
    });
    draw();
  }
  var src = document.getElementById("surfaces-data");
  if (!src) return;
  var all = JSON.parse(src.textContent);
  var canvases = document.querySelectorAll("canvas[data-surface]");
  for (var i = 0; i < canvases.length; i++) {
    var data = all[canvases[i].dataset.surface];
    if (data) surface(canvases[i], data);
  }
})();
