/* Ryorin tracking + form enhancement (no cookies). Docs: leads/capture/README.md */
(function (w, d) {
  var s = d.currentScript, base = s ? s.src.replace(/\/static\/.*$/, "") : "",
    L = w.localStorage, q = new URLSearchParams(location.search), V = "ryorin_v", T = "ryorin_rt";
  function get(k) { try { return L.getItem(k) || ""; } catch (e) { return ""; } }
  function put(k, v) { try { L.setItem(k, v); } catch (e) {} }
  var v = get(V);
  if (!v) { v = (w.crypto && crypto.randomUUID ? crypto.randomUUID() : Math.random().toString(36).slice(2) + Date.now().toString(36)).replace(/-/g, ""); put(V, v); }
  if (q.get("rt")) put(T, q.get("rt"));
  var utm = {};
  ["source", "medium", "campaign", "term", "content"].forEach(function (n) { if (q.get("utm_" + n)) utm["utm_" + n] = q.get("utm_" + n); });
  function track(key) {
    var b = JSON.stringify({ key: key, url: location.href, referrer: d.referrer, title: d.title, utm: utm, visitor: v, token: get(T) });
    if (navigator.sendBeacon) navigator.sendBeacon(base + "/api/public/track/", b);
    else fetch(base + "/api/public/track/", { method: "POST", body: b, keepalive: true });
  }
  function enhance(f) {
    function set(n, x) { var i = f.elements[n]; if (!i) { i = d.createElement("input"); i.type = "hidden"; i.name = n; f.appendChild(i); } i.value = x; }
    set("page_url", location.href); set("referrer", d.referrer); set("visitor_key", v);
    for (var k in utm) set(k, utm[k]);
    f.addEventListener("submit", function (e) {
      if (!w.fetch) return;
      e.preventDefault();
      var data = {};
      new FormData(f).forEach(function (x, n) { data[n] = x; });
      fetch(f.action, { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(data) })
        .then(function (r) { return r.json(); })
        .then(function (j) {
          f.querySelectorAll("[data-errors-for]").forEach(function (u) { u.textContent = ""; });
          if (j.ok) {
            if (j.token) put(T, j.token);
            if (j.redirect_url) { location.href = j.redirect_url; return; }
            var p = d.createElement("p"); p.className = "ryorin-thanks"; p.textContent = j.message; f.replaceWith(p); return;
          }
          var er = j.error || {}, fs = er.fields || {}, shown = 0;
          for (var n in fs) {
            var u = f.querySelector('[data-errors-for="' + n + '"]');
            if (u) { fs[n].forEach(function (t) { var li = d.createElement("li"); li.textContent = t; u.appendChild(li); }); shown = 1; }
          }
          if (!shown) alert(er.message);
        })
        .catch(function () { f.submit(); });
    });
  }
  var forms = d.querySelectorAll("form[data-ryorin-form]");
  forms.forEach(enhance);
  var key = (s && s.getAttribute("data-key")) || (forms[0] && forms[0].getAttribute("data-ryorin-form"));
  if (key || get(T)) track(key || "");
})(window, document);
