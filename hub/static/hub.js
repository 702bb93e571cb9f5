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

  // --- sharing (home page): share with users and groups, share links, revoke ---
  function sharing() {
    var statusEl = byId("sharing-status");
    function reload() { window.location.reload(); }
    function failed(what) {
      return function (err) { say(statusEl, what + ": " + err.message, true); };
    }
    document.addEventListener("submit", function (evt) {
      var form = evt.target.closest("form[data-share-action]");
      if (!form) { return; }
      evt.preventDefault();
      var panel = form.closest(".share-panel");
      var action = form.getAttribute("data-share-action");
      var button = form.querySelector("button[type=submit]");
      if (action === "share") {
        var kind = form.querySelector("input[name=kind]:checked").value;
        var name = form.querySelector("input[name=name]").value.trim();
        if (!name) { return; }
        var body = {};
        body[kind] = name;
        button.disabled = true;
        api("POST", panel.getAttribute("data-shares-api"), body).then(reload, function (err) {
          button.disabled = false;
          failed("Could not share with " + name)(err);
        });
      } else if (action === "link") {
        var seconds = parseInt(form.querySelector("select[name=expires_in]").value, 10);
        button.disabled = true;
        api("POST", panel.getAttribute("data-codes-api"), { expires_in: seconds }).then(function (code) {
          button.disabled = false;
          var box = panel.querySelector(".new-link");
          var input = box.querySelector(".new-link-url");
          input.value = code.full_accept_url || (window.location.origin + code.accept_url);
          box.hidden = false;
          input.focus();
          input.select();
          say(statusEl, "Share link made; copy it now, it is not shown again.");
        }, function (err) {
          button.disabled = false;
          failed("Could not make a share link")(err);
        });
      }
    });
    document.addEventListener("click", function (evt) {
      var button = evt.target.closest("button[data-share-action]");
      if (!button) { return; }
      var action = button.getAttribute("data-share-action");
      var panel = button.closest(".share-panel");
      if (action === "copy") {
        var input = panel.querySelector(".new-link-url");
        input.select();
        var done = function () { say(statusEl, "Link copied."); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(input.value).then(done, function () {
            say(statusEl, "Select the link and copy it.");
          });
        } else {
          say(statusEl, "Select the link and copy it.");
        }
        return;
      }
      button.disabled = true;
      var undo = function (what) {
        return function (err) {
          button.disabled = false;
          failed(what)(err);
        };
      };
      if (action === "revoke") {
        var body = {};
        body[button.getAttribute("data-kind")] = button.getAttribute("data-name");
        api("PATCH", panel.getAttribute("data-shares-api"), body).then(reload, undo("Could not revoke"));
      } else if (action === "revoke-code") {
        var id = button.getAttribute("data-code-id");
        api("DELETE", panel.getAttribute("data-codes-api") + "?id=" + encodeURIComponent(id))
          .then(reload, undo("Could not revoke the link"));
      } else if (action === "revoke-all") {
        if (!window.confirm("Stop sharing " + panel.getAttribute("data-label") + " with everyone, and revoke its links?")) {
          button.disabled = false;
          return;
        }
        api("DELETE", panel.getAttribute("data-shares-api")).then(function () {
          return api("DELETE", panel.getAttribute("data-codes-api"));
        }).then(reload, undo("Could not stop sharing"));
      } else if (action === "leave") {
        api("DELETE", button.getAttribute("data-api")).then(reload, undo("Could not give up access"));
      }
    });
  }

  function homePage() {
    var statusEl = byId("home-status");
    serverButtons(statusEl);
    sharing();
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

  // The start waits in the line: follow its place, then show its progress.
  function followQueue(section) {
    var url = section.getAttribute("data-queue-url");
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (resp) { return resp.ok ? resp.json() : null; })
        .then(function (place) {
          if (!place || !place.queued) {
            window.location.reload();
            return;
          }
          byId("queue-number").textContent = place.position;
          byId("queue-length").textContent = place.length;
          var starting = byId("queue-starting");
          if (starting) { starting.textContent = place.starting; }
          window.setTimeout(poll, 2000);
        }, function () { window.setTimeout(poll, 5000); });
    }
    window.setTimeout(poll, 1000);
  }

  function spawnPendingPage() {
    var section = byId("spawn-pending");
    if (section.getAttribute("data-queued") === "true") {
      followQueue(section);
      return;
    }
    var bar = byId("progress-bar");
    var message = byId("progress-message");
    var log = byId("progress-log");
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

  // A new token's row at the top of the token list (the same cells as the page's own).
  function addTokenRow(model) {
    var body = byId("api-tokens-body");
    if (!body) { return; }
    var empty = byId("no-api-tokens");
    if (empty) { empty.hidden = true; }
    byId("api-tokens").hidden = false;
    var row = document.createElement("tr");
    row.setAttribute("data-token-id", model.id);
    function cell(tag, text) {
      var el = document.createElement(tag);
      if (tag === "th") { el.setAttribute("scope", "row"); }
      el.textContent = text;
      row.appendChild(el);
      return el;
    }
    function when(iso) {
      if (!iso) { return "Never"; }
      var d = new Date(iso);
      return isNaN(d.getTime()) ? iso : d.toLocaleString();
    }
    cell("th", model.note || "");
    cell("td", (model.scopes || []).join(", "));
    cell("td", when(model.last_activity));
    cell("td", when(model.created));
    cell("td", when(model.expires_at));
    var actions = cell("td", "");
    var revoke = document.createElement("form");
    revoke.method = "post";
    revoke.action = data.prefix + "token";
    revoke.setAttribute("data-action", "revoke");
    [["_xsrf", data.xsrf_token], ["action", "revoke"], ["token_id", model.id]].forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      revoke.appendChild(input);
    });
    var button = document.createElement("button");
    button.type = "submit";
    button.className = "danger";
    button.textContent = "Revoke";
    button.setAttribute("aria-label", "Revoke token " + (model.note || model.id));
    revoke.appendChild(button);
    actions.appendChild(revoke);
    body.insertBefore(row, body.firstChild);
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
        addTokenRow(model);
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
