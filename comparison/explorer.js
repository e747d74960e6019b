// The optimizer explorer of the handout page (comparison/explorer.py writes its data).
// Precomputed paths, drawn over the loss's contour plot: pick a loss, an optimizer, a start and
// a learning rate, and step through the path. Every control is a native form control, so it
// works with the keyboard; the canvas also takes the arrow keys and Home / End.
(function () {
  "use strict";
  var root = document.getElementById("explorer");
  var src = document.getElementById("explorer-data");
  if (!root || !src) return;
  var D = JSON.parse(src.textContent);

  function bytes(b64) {
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  // A path's steps are stored as int16 changes from the step before, zlib-compressed.
  function inflate(b64) {
    var stream = new Blob([bytes(b64)]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (buf) {
      var q = new Int16Array(buf), pairs = q.length / 2;
      for (var i = 0; i < pairs; i++) {
        if (i % (T + 1) === 0) continue;  // a path's first step is its start
        q[2 * i] += q[2 * i - 2]; q[2 * i + 1] += q[2 * i - 1];  // wraps as numpy's int16 did
      }
      return q;
    });
  }
  var surfaces = new Float32Array(bytes(D.surfaces).buffer);
  var maxdiff = new Float64Array(bytes(D.maxdiff).buffer);
  var relative = new Float64Array(bytes(D.relative).buffer);
  var O = D.optimizers.length, K = D.losses.length, S = D.starts.length, L = D.lrCount;
  var T = D.steps, G = D.grid, jaxPaths = null, torchPaths = null;

  var $ = function (id) { return document.getElementById(id); };
  var canvas = $("ex-canvas"), ctx = canvas.getContext("2d");
  var ui = {loss: $("ex-loss"), opt: $("ex-optimizer"), start: $("ex-start"), lr: $("ex-lr"),
            step: $("ex-step"), torch: $("ex-torch"), lrOut: $("ex-lr-value"),
            stepOut: $("ex-step-value"), status: $("ex-status"), agree: $("ex-agree")};

  function index() {
    var o = +ui.opt.value, k = +ui.loss.value, s = +ui.start.value, l = +ui.lr.value;
    return {o: o, k: k, s: s, l: l, path: (((o * K + k) * S + s) * L + l)};
  }
  function point(paths, p, t) {
    var at = (p * (T + 1) + t) * 2, w = [NaN, NaN];
    for (var c = 0; c < 2; c++) {
      if (paths[at + c] !== -32768) w[c] = D.centre[c] + paths[at + c] / D.resolution * D.half[c];
    }
    return w;
  }

  // Screen mapping of the window: intercept a across, slope b up.
  var pad = 46;
  function sx(a) { return pad + (a - D.a[0]) / (D.a[1] - D.a[0]) * (canvas.width - pad - 12); }
  function sy(b) { return canvas.height - pad - (b - D.b[0]) / (D.b[1] - D.b[0]) * (canvas.height - pad - 12); }
  function inside(w) {
    return isFinite(w[0]) && isFinite(w[1]) && w[0] >= D.a[0] && w[0] <= D.a[1] &&
      w[1] >= D.b[0] && w[1] <= D.b[1];
  }

  // The contour plot of loss k: a log-scaled colour image and marching-squares contour lines.
  var backgrounds = {};
  function colour(u) {  // u in [0, 1] -> a viridis-like colour
    var stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    var x = Math.max(0, Math.min(1, u)) * (stops.length - 1), i = Math.min(3, Math.floor(x)), f = x - i;
    return stops[i].map(function (c, j) { return Math.round(c + f * (stops[i + 1][j] - c)); });
  }
  function levels(z) {
    var lo = Infinity, hi = -Infinity;
    for (var i = 0; i < z.length; i++) { lo = Math.min(lo, z[i]); hi = Math.max(hi, z[i]); }
    return {lo: Math.log(lo), hi: Math.log(hi)};
  }
  function background(k) {
    if (backgrounds[k]) return backgrounds[k];
    var z = surfaces.subarray(k * G * G, (k + 1) * G * G), r = levels(z);
    var off = document.createElement("canvas");
    off.width = canvas.width; off.height = canvas.height;
    var c = off.getContext("2d"), img = c.createImageData(off.width, off.height);
    for (var py = 0; py < off.height; py++) {
      for (var px = 0; px < off.width; px++) {
        var u = (px - pad) / (off.width - pad - 12), v = (off.height - pad - py) / (off.height - pad - 12);
        var o = (py * off.width + px) * 4;
        if (u < 0 || u > 1 || v < 0 || v > 1) { img.data[o + 3] = 0; continue; }
        var fi = u * (G - 1), fj = v * (G - 1);  // bilinear between the four grid points
        var i = Math.min(G - 2, Math.floor(fi)), j = Math.min(G - 2, Math.floor(fj));
        var di = fi - i, dj = fj - j;
        var zz = (1 - dj) * ((1 - di) * z[j * G + i] + di * z[j * G + i + 1]) +
          dj * ((1 - di) * z[(j + 1) * G + i] + di * z[(j + 1) * G + i + 1]);
        var col = colour((Math.log(zz) - r.lo) / (r.hi - r.lo));
        img.data[o] = col[0]; img.data[o + 1] = col[1]; img.data[o + 2] = col[2]; img.data[o + 3] = 255;
      }
    }
    c.putImageData(img, 0, 0);
    c.strokeStyle = "rgba(255,255,255,0.55)"; c.lineWidth = 1;
    var da = (D.a[1] - D.a[0]) / (G - 1), db = (D.b[1] - D.b[0]) / (G - 1);
    for (var n = 1; n < 12; n++) {
      var level = Math.exp(r.lo + (r.hi - r.lo) * n / 12);
      c.beginPath();
      for (var j2 = 0; j2 < G - 1; j2++) {
        for (var i2 = 0; i2 < G - 1; i2++) {
          var q = [z[j2 * G + i2], z[j2 * G + i2 + 1], z[(j2 + 1) * G + i2 + 1], z[(j2 + 1) * G + i2]];
          var corners = [[i2, j2], [i2 + 1, j2], [i2 + 1, j2 + 1], [i2, j2 + 1]], cuts = [];
          for (var e = 0; e < 4; e++) {
            var z0 = q[e], z1 = q[(e + 1) % 4];
            if ((z0 < level) !== (z1 < level)) {
              var f = (level - z0) / (z1 - z0), p0 = corners[e], p1 = corners[(e + 1) % 4];
              cuts.push([D.a[0] + (p0[0] + f * (p1[0] - p0[0])) * da, D.b[0] + (p0[1] + f * (p1[1] - p0[1])) * db]);
            }
          }
          for (var m = 0; m + 1 < cuts.length; m += 2) {
            c.moveTo(sx(cuts[m][0]), sy(cuts[m][1])); c.lineTo(sx(cuts[m + 1][0]), sy(cuts[m + 1][1]));
          }
        }
      }
      c.stroke();
    }
    c.fillStyle = "#1d2330"; c.font = "12px system-ui, sans-serif"; c.textAlign = "center";
    for (var t = 0; t <= 4; t++) {
      var av = D.a[0] + (D.a[1] - D.a[0]) * t / 4, bv = D.b[0] + (D.b[1] - D.b[0]) * t / 4;
      c.fillText(av.toFixed(1), sx(av), off.height - pad + 16);
      c.textAlign = "right"; c.fillText(bv.toFixed(1), pad - 6, sy(bv) + 4); c.textAlign = "center";
    }
    c.fillText("intercept w\u2080", pad + (off.width - pad) / 2, off.height - 8);
    c.save(); c.translate(14, (off.height - pad) / 2); c.rotate(-Math.PI / 2);
    c.fillText("slope w\u2081", 0, 0); c.restore();
    backgrounds[k] = off;
    return off;
  }

  function drawPath(paths, p, upto, style, width) {
    ctx.strokeStyle = style; ctx.lineWidth = width; ctx.beginPath();
    var pen = false;
    for (var t = 0; t <= upto; t++) {
      var w = point(paths, p, t);
      if (!isFinite(w[0]) || !isFinite(w[1])) break;
      var x = Math.max(-1e4, Math.min(1e4, sx(w[0]))), y = Math.max(-1e4, Math.min(1e4, sy(w[1])));
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    }
    ctx.stroke();
  }
  function firstOutside(p) {
    for (var t = 0; t <= T; t++) if (!inside(point(jaxPaths, p, t))) return t;
    return -1;
  }
  function fmt(v) { return Math.abs(v) < 1e4 && Math.abs(v) >= 1e-3 ? v.toPrecision(4) : v.toExponential(2); }

  function draw() {
    if (!jaxPaths) return;  // still inflating
    var ix = index(), p = ix.path, t = +ui.step.value;
    var lr = D.optimizers[ix.o].lrs[ix.l];
    ui.lrOut.textContent = fmt(lr);
    ui.stepOut.textContent = t + " of " + T;
    canvas.dataset.path = p; canvas.dataset.step = t;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(background(ix.k), 0, 0);
    ctx.save();
    ctx.beginPath(); ctx.rect(pad, 12, canvas.width - pad - 12, canvas.height - pad - 12); ctx.clip();
    ctx.fillStyle = "#fff"; ctx.beginPath(); ctx.arc(sx(D.centre[0]), sy(D.centre[1]), 4, 0, 7); ctx.fill();
    drawPath(jaxPaths, p, T, "rgba(255,255,255,0.35)", 1.5);
    if (ui.torch.checked) drawPath(torchPaths, p, t, "#ee4c2c", 5);
    drawPath(jaxPaths, p, t, "#2f6fdb", 2);
    var w = point(jaxPaths, p, t), marker = {x: NaN, y: NaN};
    if (isFinite(w[0]) && isFinite(w[1])) {
      marker = {x: sx(w[0]), y: sy(w[1])};
      ctx.fillStyle = "#ffdd00"; ctx.strokeStyle = "#1d2330"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(marker.x, marker.y, 7, 0, 7); ctx.fill(); ctx.stroke();
    }
    ctx.restore();
    canvas.dataset.markerX = marker.x.toFixed(1); canvas.dataset.markerY = marker.y.toFixed(1);
    var out = firstOutside(p), bad = D.divergedAt[p];
    var words = "w = (" + fmt(w[0]) + ", " + fmt(w[1]) + ") at step " + t + ".";
    if (bad >= 0) words += " Diverged: the loss overflows at step " + bad + ".";
    else if (out >= 0) words += " Diverging: the path leaves the window at step " + out + (t >= out ? " (the marker is off the chart)." : ".");
    ui.status.textContent = words;
    var d = maxdiff[p], r = relative[p];
    ui.agree.textContent = D.optimizers[ix.o].torch + " on the same batches: " +
      (isFinite(d) ? "the largest difference from JAX over the whole path is " + d.toExponential(1) +
        " (" + r.toExponential(1) + " of its size)" +
        (r <= 1e-9 ? ": the two paths coincide." : r <= 1e-6 ? ": the two coincide on the plot; " +
          "more than rounding apart, for the reason above." : ".")
        : "the two stop being finite at different steps.");
    root.dataset.state = [ix.o, ix.k, ix.s, ix.l, t].join(",");
  }

  ui.lr.max = L - 1; ui.step.max = T;
  [ui.loss, ui.opt, ui.start, ui.lr, ui.step, ui.torch].forEach(function (el) {
    el.addEventListener("input", draw); el.addEventListener("change", draw);
  });
  function go(t) { ui.step.value = Math.max(0, Math.min(T, t)); draw(); }
  $("ex-back").addEventListener("click", function () { go(+ui.step.value - 1); });
  $("ex-forward").addEventListener("click", function () { go(+ui.step.value + 1); });
  $("ex-first").addEventListener("click", function () { go(0); });
  $("ex-last").addEventListener("click", function () { go(T); });
  canvas.addEventListener("keydown", function (ev) {
    var moves = {ArrowLeft: -1, ArrowRight: 1, PageDown: -10, PageUp: 10};
    if (ev.key in moves) go(+ui.step.value + moves[ev.key]);
    else if (ev.key === "Home") go(0);
    else if (ev.key === "End") go(T);
    else return;
    ev.preventDefault();
  });
  Promise.all([inflate(D.jax), inflate(D.torch)]).then(function (both) {
    jaxPaths = both[0]; torchPaths = both[1];
    root.classList.add("live");
    draw();
  });
})();
