// Helpers for the hub's pages: calls to the hub's REST API with the page's XSRF token, and
// the behaviour of the home, spawn-pending and token pages. Text from the hub is only ever
// inserted as text, never as HTML.
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("jhdata").textContent);

  function apiUrl(path) {
    var sep = path.indexOf("?") === -1 ? "?" : "&";
    return data.prefix + "api/" + path + sep + "_xsrf=" + encodeURIComponent(data.xsrf_token);
  }

  function api(method, path, body) {
    var init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(apiUrl(path), init).then(function (resp) {
      if (resp.status === 204) { return null; }
      return resp.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
        if (!resp.ok) {
          var err = new Error(json && json.message ? json.message : resp.statusText);
          err.status = resp.status;
          throw err;
        }
        return json;
      });
    });
  }

  window.jhub = { data: data, api: api, apiUrl: apiUrl };

  function byId(id) { return document.getElementById(id); }

  function say(el, text, isError) {
    if (!el) { return; }
    el.textContent = text;
    el.hidden = false;
    if (isError) { el.classList.add("error"); } else { el.classList.remove("error"); }
  }

  // --- buttons that stop or delete a server (home and spawn-pending pages) ---
  function serverButtons(statusEl) {
    document.addEventListener("click", function (evt) {
      var button = evt.target.closest("button[data-action]");
      if (!button) { return; }
      var action = button.getAttribute("data-action");
      if (action !== "stop" && action !== "delete") { return; }
      var path = button.getAttribute("data-api");
      var label = button.getAttribute("data-label") || "server";
      if (action === "delete" && !window.confirm("Delete " + label + "? This cannot be undone.")) {
        return;
      }
      button.disabled = true;
      say(statusEl, (action === "delete" ? "Deleting " : "Stopping ") + label + "…");
      var body = action === "delete" ? { remove: true } : undefined;
      api("DELETE", path, body).then(function () {
        window.location.reload();
      }, function (err) {
        button.disabled = false;
        say(statusEl, "Could not " + action + " " + label + ": " + err.message, true);
      });
    });
  }

  function homePage() {
    var statusEl = byId("home-status");
    serverButtons(statusEl);
    var form = byId("new-server-form");
    if (form) {
      form.addEventListener("submit", function (evt) {
        evt.preventDefault();
        var input = byId("new-server-name");
        var name = input.value.trim();
        if (!name || !input.checkValidity()) {
          say(statusEl, "Server names use lower-case letters, digits and single hyphens, and start with a letter.", true);
          input.focus();
          return;
        }
        window.location.href = form.getAttribute("data-spawn-base") + encodeURIComponent(name);
      });
    }
  }

  function spawnPendingPage() {
    var section = byId("spawn-pending");
    var bar = byId("progress-bar");
    var message = byId("progress-message");
    var log = byId("progress-log");
    serverButtons(message);
    var nextUrl = section.getAttribute("data-next-url");
    var serverUrl = section.getAttribute("data-server-url");
    var url = section.getAttribute("data-progress-url");
    url += (url.indexOf("?") === -1 ? "?" : "&") + "_xsrf=" + encodeURIComponent(data.xsrf_token);
    var source = new EventSource(url);
    var finished = false;
    source.onmessage = function (evt) {
      var event;
      try { event = JSON.parse(evt.data); } catch (e) { return; }
      if (typeof event.progress === "number") {
        bar.value = event.progress;
        bar.textContent = event.progress + "%";
      }
      if (event.message) {
        message.textContent = event.message;
        var item = document.createElement("li");
        item.textContent = event.message;
        log.appendChild(item);
      }
      if (event.ready) {
        finished = true;
        source.close();
        window.location.replace(nextUrl || event.url || serverUrl);
      } else if (event.failed) {
        finished = true;
        source.close();
        byId("progress-details").open = true;
        // The page shows the failure and a way to try again.
        window.setTimeout(function () { window.location.reload(); }, 1500);
      }
    };
    source.onerror = function () {
      if (finished) { return; }
      source.close();
      // The stream ended without a verdict (the hub restarted, the start ended meanwhile):
      // the page itself knows where the server stands.
      window.setTimeout(function () { window.location.reload(); }, 2000);
    };
  }

  function tokenPage() {
    var section = byId("token-page");
    var path = section.getAttribute("data-api");
    var errorEl = byId("token-error");
    var form = byId("request-token-form");
    form.addEventListener("submit", function (evt) {
      evt.preventDefault();
      errorEl.hidden = true;
      var body = {};
      var note = byId("token-note").value.trim();
      if (note) { body.note = note; }
      var expires = byId("token-expiration").value;
      body.expires_in = expires ? parseInt(expires, 10) : null;
      var scopes = [];
      form.querySelectorAll("input[name=scopes]:checked").forEach(function (box) {
        scopes.push(box.value);
      });
      if (scopes.length) { body.scopes = scopes; }
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      api("POST", path, body).then(function (model) {
        button.disabled = false;
        byId("new-token").textContent = model.token;
        var result = byId("token-result");
        var noteEl = byId("token-result-note");
        if (noteEl) { noteEl.textContent = "(" + model.note + ")"; }
        result.hidden = false;
        form.reset();
      }, function (err) {
        button.disabled = false;
        say(errorEl, "Could not create the token: " + err.message, true);
      });
    });
    document.addEventListener("submit", function (evt) {
      var revoke = evt.target.closest("form[data-action=revoke]");
      if (!revoke) { return; }
      evt.preventDefault();
      var row = revoke.closest("tr");
      var id = revoke.querySelector("input[name=token_id]").value;
      var button = revoke.querySelector("button");
      button.disabled = true;
      api("DELETE", path + "/" + encodeURIComponent(id)).then(function () {
        row.parentNode.removeChild(row);
      }, function (err) {
        button.disabled = false;
        say(errorEl, "Could not revoke: " + err.message, true);
      });
    });
  }

  var page = document.body.getAttribute("data-page");
  if (page === "home") { homePage(); }
  if (page === "spawn-pending") { spawnPendingPage(); }
  if (page === "token") { tokenPage(); }
})();
