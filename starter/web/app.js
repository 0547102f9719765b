// Refreshes the page in place from /api/snapshot every 2 s. Every value
// goes in with textContent, never as HTML.
"use strict";
(function () {
  function get(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? o : o[k]; }, obj);
  }
  function fill(tbody, rows) {
    if (!tbody) return;
    tbody.replaceChildren.apply(tbody, rows.map(function (cells) {
      var tr = document.createElement("tr");
      cells.forEach(function (c) { var td = document.createElement("td"); td.textContent = String(c); tr.appendChild(td); });
      return tr;
    }));
  }
  function spark(id, points, field) {
    var line = document.getElementById(id);
    if (!line || points.length < 2) return;
    var peak = Math.max.apply(null, points.map(function (p) { return p[field]; })) || 1;
    line.setAttribute("points", points.map(function (p, i) {
      return (300 * i / (points.length - 1)).toFixed(1) + "," + (60 - 60 * p[field] / peak).toFixed(1);
    }).join(" "));
  }
  function ts(s) { return s.replace("T", " ").replace(/\.\d+/, "").replace("Z", ""); }
  function render(s) {
    document.querySelectorAll("[data-f]").forEach(function (el) {
      var path = el.getAttribute("data-f"), v = path === "at" ? ts(s.at) : get(s, path);
      if (v === undefined || v === null) return;
      if (path === "stream.rate") v = Math.round(v);
      el.textContent = String(v);
      if (el.hasAttribute("data-state")) el.setAttribute("data-state", String(v));
    });
    fill(document.getElementById("partitions"), (s.stream.partitions || []).map(function (p) { return [p.partition, p.committed, p.high, p.lag]; }));
    fill(document.getElementById("reasons"), (s.dead_letters || []).map(function (d) { return [d.reason, d.n]; }));
    if (s.batch) fill(document.getElementById("detection"), (s.batch.detection || []).map(function (r) { return [r.rule, r.precision, r.recall]; }));
    var problems = document.getElementById("problems");
    if (problems) problems.replaceChildren.apply(problems, (s.problems || []).map(function (p) { var li = document.createElement("li"); li.textContent = p; return li; }));
    spark("rate-line", s.history || [], "rate");
    spark("lag-line", s.history || [], "lag");
  }
  function poll() {
    fetch("/api/snapshot", { cache: "no-store" }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) { if (s) render(s); }).catch(function () {})
      .finally(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 2000);
})();
