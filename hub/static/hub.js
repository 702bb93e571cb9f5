// Helpers for the hub's pages: calls to the hub's REST API with the page's XSRF token.
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("jhdata").textContent);
  function api(method, path, body) {
    var sep = path.indexOf("?") === -1 ? "?" : "&";
    var url = data.prefix + "api/" + path + sep + "_xsrf=" + encodeURIComponent(data.xsrf_token);
    var init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (resp) {
      if (resp.status === 204) { return null; }
      return resp.json().then(function (json) {
        if (!resp.ok) {
          var err = new Error(json && json.message ? json.message : resp.statusText);
          err.status = resp.status;
          throw err;
        }
        return json;
      });
    });
  }
  window.jhub = { data: data, api: api };
})();
