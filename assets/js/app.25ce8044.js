// Sample script for the edge demo site: shows the Cache-Status of each asset.
(function () {
  "use strict";
  var assets = Array.prototype.slice.call(document.querySelectorAll("[data-asset]"));
  function describe(url) {
    return fetch(url, { method: "HEAD", cache: "no-store" }).then(function (res) {
      return {
        url: url,
        status: res.status,
        cacheStatus: res.headers.get("cache-status") || "(none)",
        cacheControl: res.headers.get("cache-control") || "(none)",
        etag: res.headers.get("etag") || "(none)"
      };
    });
  }
  function render(rows) {
    var body = document.getElementById("assets");
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      [row.url, String(row.status), row.cacheStatus, row.cacheControl].forEach(function (text) {
        var td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    document.getElementById("status").textContent = "served through edge";
  }
  Promise.all(assets.map(function (el) { return describe(el.getAttribute("data-asset")); }))
    .then(render)
    .catch(function (err) { document.getElementById("status").textContent = "error: " + err; });
})();
