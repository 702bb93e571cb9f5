// The admin page: users and groups through the hub's REST API (paged, searched and sorted by
// the hub), bulk actions, servers of each user. Values from the hub are only ever inserted as
// text; rows come from the page's <template> elements.
"use strict";
(function () {
  var jhub = window.jhub;
  var root = document.getElementById("admin");
  if (!root || !jhub) { return; }
  var api = jhub.api;
  var me = root.getAttribute("data-me");
  var namedServers = root.getAttribute("data-named-servers") === "true";
  var statusEl = document.getElementById("admin-status");
  var PAGINATED = "application/jupyterhub-pagination+json";

  function byId(id) { return document.getElementById(id); }
  function enc(name) { return encodeURIComponent(name); }
  function say(text, isError) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", Boolean(isError));
  }
  function clone(id) { return byId(id).content.firstElementChild.cloneNode(true); }
  function when(iso) {
    if (!iso) { return document.createTextNode("Never"); }
    var t = document.createElement("time");
    t.setAttribute("datetime", iso);
    var d = new Date(iso);
    t.textContent = isNaN(d.getTime()) ? iso : d.toLocaleString();
    return t;
  }
  function setChild(el, node) {
    el.textContent = "";
    el.appendChild(node);
  }
  // GET with the pagination envelope.
  function page(path) {
    return fetch(jhub.apiUrl(path), {
      credentials: "same-origin",
      headers: { Accept: PAGINATED }
    }).then(function (resp) {
      return resp.json().catch(function () { return null; }).then(function (json) {
        if (!resp.ok) {
          throw new Error(json && json.message ? json.message : resp.statusText);
        }
        return json;
      });
    });
  }
  // Runs `task` on every item, a few at a time; resolves with the list of failures.
  function each(items, task) {
    var failures = [];
    var next = 0;
    function worker() {
      if (next >= items.length) { return Promise.resolve(); }
      var item = items[next++];
      return task(item).catch(function (err) {
        failures.push(item + ": " + err.message);
      }).then(worker);
    }
    var workers = [];
    for (var i = 0; i < Math.min(4, items.length); i++) { workers.push(worker()); }
    return Promise.all(workers).then(function () { return failures; });
  }
  function report(done, failures) {
    if (failures.length) {
      say(done + " " + failures.length + " failed: " + failures.join("; "), true);
    } else {
      say(done);
    }
  }
  function serverPath(user, server) {
    return server ? "users/" + enc(user) + "/servers/" + enc(server) : "users/" + enc(user) + "/server";
  }
  function serverState(server) {
    if (!server) { return "Stopped"; }
    if (server.ready) { return "Running"; }
    if (server.pending === "spawn") { return "Starting"; }
    if (server.pending === "stop") { return "Stopping"; }
    if (server.pending) { return "Checking"; }
    return "Stopped";
  }
  function isActive(server) { return Boolean(server && (server.ready || server.pending)); }

  // === users ===
  var users = {
    offset: 0,
    limit: parseInt(root.getAttribute("data-page-limit"), 10) || 50,
    sort: "id",
    filter: "",
    state: "",
    total: 0,
    models: {},
    selected: {}
  };
  var query = new URLSearchParams(window.location.search);
  if (query.get("name_filter")) { users.filter = query.get("name_filter"); byId("user-filter").value = users.filter; }
  if (query.get("state")) { users.state = query.get("state"); byId("user-state").value = users.state; }
  if (query.get("sort")) { users.sort = query.get("sort"); }
  if (query.get("offset")) { users.offset = Math.max(0, parseInt(query.get("offset"), 10) || 0); }
  if (query.get("limit")) {
    var wanted = query.get("limit");
    if (byId("user-limit").querySelector("option[value='" + parseInt(wanted, 10) + "']")) {
      users.limit = parseInt(wanted, 10);
    }
  }
  byId("user-limit").value = String(users.limit);

  function remember() {
    var q = new URLSearchParams();
    if (users.filter) { q.set("name_filter", users.filter); }
    if (users.state) { q.set("state", users.state); }
    if (users.sort !== "id") { q.set("sort", users.sort); }
    if (users.offset) { q.set("offset", String(users.offset)); }
    q.set("limit", String(users.limit));
    window.history.replaceState(null, "", "?" + q.toString());
  }

  function selectedNames() {
    return Object.keys(users.selected).filter(function (n) { return users.selected[n]; });
  }
  function updateBulk() {
    var names = selectedNames();
    byId("selected-count").textContent = names.length ? names.length + " selected" : "No users selected";
    document.querySelectorAll("#bulk button[data-bulk]").forEach(function (b) { b.disabled = !names.length; });
    var boxes = document.querySelectorAll("#users-body .select-user");
    var all = boxes.length > 0;
    boxes.forEach(function (b) { if (!b.checked) { all = false; } });
    byId("select-page").checked = all;
  }

  function updateSortHeaders() {
    var key = users.sort.replace(/^-/, "");
    var desc = users.sort.charAt(0) === "-";
    document.querySelectorAll("#users-table th[data-sort]").forEach(function (th) {
      var mine = th.getAttribute("data-sort") === key;
      th.setAttribute("aria-sort", mine ? (desc ? "descending" : "ascending") : "none");
    });
  }

  function loadUsers() {
    var q = "users?include_stopped_servers=1&offset=" + users.offset + "&limit=" + users.limit +
      "&sort=" + enc(users.sort);
    if (users.filter) { q += "&name_filter=" + enc(users.filter); }
    if (users.state) { q += "&state=" + enc(users.state); }
    remember();
    updateSortHeaders();
    return page(q).then(function (reply) {
      var items = reply.items || [];
      var info = reply._pagination || { offset: users.offset, limit: users.limit, total: items.length };
      users.total = info.total;
      if (!items.length && users.offset > 0 && info.total > 0) {
        users.offset = Math.max(0, info.total - users.limit);
        return loadUsers();
      }
      renderUsers(items);
      var first = items.length ? info.offset + 1 : 0;
      byId("users-summary").textContent = items.length
        ? "Users " + first + "–" + (info.offset + items.length) + " of " + info.total
        : (users.filter || users.state ? "No users match." : "No users.");
      byId("users-prev").disabled = users.offset <= 0;
      byId("users-next").disabled = !info.next;
    }, function (err) {
      say("Could not load users: " + err.message, true);
    });
  }

  function renderUsers(items) {
    var body = byId("users-body");
    body.textContent = "";
    users.models = {};
    users.selected = {};
    items.forEach(function (u) {
      users.models[u.name] = u;
      body.appendChild(userRow(u));
    });
    updateBulk();
  }

  function userRow(u) {
    var row = clone("user-row-template");
    row.setAttribute("data-user", u.name);
    var select = row.querySelector(".select-user");
    select.setAttribute("aria-label", "Select " + u.name);
    select.addEventListener("change", function () {
      users.selected[u.name] = select.checked;
      updateBulk();
    });
    row.querySelector(".user-name").textContent = u.name;
    row.querySelector(".you").hidden = u.name !== me;
    var admin = row.querySelector(".admin-flag");
    admin.checked = Boolean(u.admin);
    admin.setAttribute("aria-label", "Administrator: " + u.name);
    admin.addEventListener("change", function () {
      var value = admin.checked;
      if (!value && u.name === me && !window.confirm("Remove your own administrator rights?")) {
        admin.checked = true;
        return;
      }
      admin.disabled = true;
      api("PATCH", "users/" + enc(u.name), { admin: value }).then(function () {
        admin.disabled = false;
        say(u.name + (value ? " is now an administrator." : " is no longer an administrator."));
      }, function (err) {
        admin.disabled = false;
        admin.checked = !value;
        say("Could not change " + u.name + ": " + err.message, true);
      });
    });
    var servers = u.servers || {};
    var def = servers[""];
    row.querySelector(".server-state").textContent = serverState(def);
    setChild(row.querySelector(".last-activity"), when(u.last_activity));
    var start = row.querySelector(".start-server");
    var stop = row.querySelector(".stop-server");
    var open = row.querySelector(".open-server");
    start.setAttribute("aria-label", "Start the server of " + u.name);
    stop.setAttribute("aria-label", "Stop the server of " + u.name);
    open.setAttribute("aria-label", "Open the server of " + u.name);
    start.hidden = isActive(def);
    stop.hidden = !isActive(def);
    open.hidden = !(def && def.ready);
    if (def && def.url) { open.href = def.url; }
    start.addEventListener("click", function () { startServer(u.name, "", start); });
    stop.addEventListener("click", function () { stopServer(u.name, "", stop); });
    var toggle = row.querySelector(".show-servers");
    var count = Object.keys(servers).length;
    toggle.textContent = namedServers ? "Servers (" + count + ")" : "Details";
    toggle.setAttribute("aria-label", "Servers of " + u.name);
    toggle.addEventListener("click", function () {
      var open = toggle.getAttribute("aria-expanded") === "true";
      var next = row.nextElementSibling;
      if (next && next.classList.contains("servers-row")) { next.parentNode.removeChild(next); }
      if (open) {
        toggle.setAttribute("aria-expanded", "false");
        return;
      }
      toggle.setAttribute("aria-expanded", "true");
      row.parentNode.insertBefore(serversRow(u), row.nextSibling);
    });
    var frag = document.createDocumentFragment();
    frag.appendChild(row);
    return frag;
  }

  function serversRow(u) {
    var row = clone("servers-row-template");
    row.querySelector(".servers-caption").textContent = "Servers of " + u.name;
    var body = row.querySelector(".servers-body");
    var servers = u.servers || {};
    var names = Object.keys(servers).sort();
    if (names.indexOf("") === -1) { names.unshift(""); }
    names.forEach(function (name) {
      var s = servers[name];
      var r = clone("server-row-template");
      var label = name || "Default server";
      r.querySelector(".server-name").textContent = label;
      r.querySelector(".server-state").textContent = serverState(s);
      var profile = s && s.user_options && typeof s.user_options.profile === "string" ? s.user_options.profile : "";
      r.querySelector(".server-profile").textContent = profile || "—";
      setChild(r.querySelector(".server-started"), when(s && s.started));
      setChild(r.querySelector(".server-activity"), when(s && s.last_activity));
      var start = r.querySelector(".start-server");
      var stop = r.querySelector(".stop-server");
      var open = r.querySelector(".open-server");
      start.setAttribute("aria-label", "Start " + label + " of " + u.name);
      stop.setAttribute("aria-label", "Stop " + label + " of " + u.name);
      open.setAttribute("aria-label", "Open " + label + " of " + u.name);
      start.hidden = isActive(s);
      stop.hidden = !isActive(s);
      open.hidden = !(s && s.ready);
      if (s && s.url) { open.href = s.url; }
      start.addEventListener("click", function () { startServer(u.name, name, start); });
      stop.addEventListener("click", function () { stopServer(u.name, name, stop); });
      body.appendChild(r);
    });
    return row;
  }

  function startServer(user, server, button) {
    if (button) { button.disabled = true; }
    say("Starting " + (server ? user + "/" + server : "the server of " + user) + "…");
    return api("POST", serverPath(user, server)).then(function () {
      say("Started " + (server ? user + "/" + server : "the server of " + user) + ".");
      return loadUsers();
    }, function (err) {
      if (button) { button.disabled = false; }
      say("Could not start " + (server ? user + "/" + server : "the server of " + user) + ": " + err.message, true);
    });
  }

  function stopServer(user, server, button) {
    if (button) { button.disabled = true; }
    say("Stopping " + (server ? user + "/" + server : "the server of " + user) + "…");
    return api("DELETE", serverPath(user, server)).then(function () {
      say("Stopped " + (server ? user + "/" + server : "the server of " + user) + ".");
      return loadUsers();
    }, function (err) {
      if (button) { button.disabled = false; }
      say("Could not stop " + (server ? user + "/" + server : "the server of " + user) + ": " + err.message, true);
    });
  }

  // Bulk actions on the selected users.
  var bulk = {
    start: function (names) {
      var todo = names.filter(function (n) { return !isActive((users.models[n].servers || {})[""]); });
      say("Starting " + todo.length + " servers…");
      return each(todo, function (n) { return api("POST", serverPath(n, "")); }).then(function (f) {
        report("Started " + (todo.length - f.length) + " servers.", f);
      });
    },
    stop: function (names) {
      var todo = [];
      names.forEach(function (n) {
        var servers = users.models[n].servers || {};
        Object.keys(servers).forEach(function (s) {
          if (isActive(servers[s])) { todo.push([n, s]); }
        });
      });
      say("Stopping " + todo.length + " servers…");
      return each(todo.map(function (p) { return p[0] + (p[1] ? "/" + p[1] : ""); }), function (label) {
        var i = label.indexOf("/");
        var user = i === -1 ? label : label.slice(0, i);
        var server = i === -1 ? "" : label.slice(i + 1);
        return api("DELETE", serverPath(user, server));
      }).then(function (f) {
        report("Stopped " + (todo.length - f.length) + " servers.", f);
      });
    },
    group: function (names) {
      var group = byId("bulk-group").value.trim();
      if (!group) {
        say("Type the name of a group first.", true);
        byId("bulk-group").focus();
        return Promise.resolve();
      }
      return api("POST", "groups/" + enc(group) + "/users", { users: names }).then(function () {
        say("Added " + names.length + " users to " + group + ".");
        return loadGroups();
      }, function (err) {
        say("Could not add users to " + group + ": " + err.message, true);
      });
    },
    "delete": function (names) {
      if (!window.confirm("Delete " + names.length + " users and their servers? This cannot be undone.")) {
        return Promise.resolve();
      }
      say("Deleting " + names.length + " users…");
      return each(names, function (n) { return api("DELETE", "users/" + enc(n)); }).then(function (f) {
        report("Deleted " + (names.length - f.length) + " users.", f);
      });
    }
  };

  byId("bulk").addEventListener("click", function (evt) {
    var button = evt.target.closest("button[data-bulk]");
    if (!button) { return; }
    var names = selectedNames();
    if (!names.length) { return; }
    var buttons = document.querySelectorAll("#bulk button[data-bulk]");
    buttons.forEach(function (b) { b.disabled = true; });
    bulk[button.getAttribute("data-bulk")](names).then(function () {
      return loadUsers();
    });
  });

  byId("select-page").addEventListener("change", function () {
    var on = byId("select-page").checked;
    document.querySelectorAll("#users-body .select-user").forEach(function (box) {
      box.checked = on;
      users.selected[box.closest("tr").getAttribute("data-user")] = on;
    });
    updateBulk();
  });

  var filterTimer = null;
  byId("user-filter").addEventListener("input", function () {
    window.clearTimeout(filterTimer);
    filterTimer = window.setTimeout(function () {
      users.filter = byId("user-filter").value.trim();
      users.offset = 0;
      loadUsers();
    }, 250);
  });
  byId("user-search").addEventListener("submit", function (evt) {
    evt.preventDefault();
    window.clearTimeout(filterTimer);
    users.filter = byId("user-filter").value.trim();
    users.offset = 0;
    loadUsers();
  });
  byId("user-state").addEventListener("change", function () {
    users.state = byId("user-state").value;
    users.offset = 0;
    loadUsers();
  });
  byId("user-limit").addEventListener("change", function () {
    users.limit = parseInt(byId("user-limit").value, 10) || users.limit;
    users.offset = 0;
    loadUsers();
  });
  document.querySelectorAll("#users-table button.sort").forEach(function (button) {
    button.addEventListener("click", function () {
      var key = button.getAttribute("data-sort");
      // Names first A→Z, activity first most recent.
      var first = key === "last_activity" ? "-" + key : key;
      var second = key === "last_activity" ? key : "-" + key;
      users.sort = users.sort === first ? second : first;
      users.offset = 0;
      loadUsers();
    });
  });
  byId("users-prev").addEventListener("click", function () {
    users.offset = Math.max(0, users.offset - users.limit);
    loadUsers();
  });
  byId("users-next").addEventListener("click", function () {
    users.offset += users.limit;
    loadUsers();
  });

  byId("add-users-form").addEventListener("submit", function (evt) {
    evt.preventDefault();
    var names = byId("new-usernames").value.split(/[\s,]+/).map(function (n) { return n.trim(); })
      .filter(function (n) { return n; });
    if (!names.length) {
      say("Type at least one username.", true);
      return;
    }
    var admin = byId("new-users-admin").checked;
    var submit = byId("add-users-submit");
    submit.disabled = true;
    api("POST", "users", { usernames: names, admin: admin }).then(function (created) {
      submit.disabled = false;
      var made = (created || []).map(function (u) { return u.name; });
      var skipped = names.length - made.length;
      say("Added " + made.join(", ") + "." + (skipped > 0 ? " " + skipped + " already existed." : ""));
      byId("new-usernames").value = "";
      byId("new-users-admin").checked = false;
      return loadUsers();
    }, function (err) {
      submit.disabled = false;
      say("Could not add users: " + err.message, true);
    });
  });

  // === groups ===
  var groups = { offset: 0, limit: 50, filter: "", open: {} };

  function loadGroups() {
    var q = "groups?offset=" + groups.offset + "&limit=" + groups.limit;
    if (groups.filter) { q += "&name_filter=" + enc(groups.filter); }
    return page(q).then(function (reply) {
      var items = reply.items || [];
      var info = reply._pagination || { offset: groups.offset, total: items.length };
      renderGroups(items);
      byId("groups-summary").textContent = items.length
        ? "Groups " + (info.offset + 1) + "–" + (info.offset + items.length) + " of " + info.total
        : (groups.filter ? "No groups match." : "No groups yet.");
      byId("groups-prev").disabled = groups.offset <= 0;
      byId("groups-next").disabled = !info.next;
      var list = byId("group-names");
      list.textContent = "";
      items.forEach(function (g) {
        var option = document.createElement("option");
        option.value = g.name;
        list.appendChild(option);
      });
    }, function (err) {
      say("Could not load groups: " + err.message, true);
    });
  }

  function renderGroups(items) {
    var body = byId("groups-body");
    body.textContent = "";
    items.forEach(function (g, i) {
      var row = clone("group-row-template");
      row.setAttribute("data-group", g.name);
      row.querySelector(".group-name").textContent = g.name;
      var members = g.users || [];
      row.querySelector(".group-members").textContent = members.length
        ? members.length + (members.length === 1 ? " member" : " members")
        : "No members";
      var props = Object.keys(g.properties || {});
      row.querySelector(".group-properties").textContent = props.length ? props.join(", ") : "—";
      var manage = row.querySelector(".manage-group");
      manage.setAttribute("aria-label", "Manage group " + g.name);
      manage.addEventListener("click", function () {
        var isOpen = manage.getAttribute("aria-expanded") === "true";
        var next = row.nextElementSibling;
        if (next && next.classList.contains("group-detail")) { next.parentNode.removeChild(next); }
        groups.open[g.name] = !isOpen;
        manage.setAttribute("aria-expanded", isOpen ? "false" : "true");
        if (!isOpen) {
          var detail = groupDetail(g, i);
          row.parentNode.insertBefore(detail, row.nextSibling);
          detail.querySelector(".add-member-name").focus();
        }
      });
      body.appendChild(row);
      if (groups.open[g.name]) {
        manage.setAttribute("aria-expanded", "true");
        body.appendChild(groupDetail(g, i));
      }
    });
  }

  function groupDetail(g, i) {
    var row = clone("group-detail-template");
    var path = "groups/" + enc(g.name);
    row.querySelector(".group-title").textContent = "Group " + g.name;
    var list = row.querySelector(".members");
    var members = (g.users || []).slice().sort();
    if (!members.length) {
      var none = document.createElement("li");
      none.textContent = "No members.";
      list.appendChild(none);
    }
    members.forEach(function (name) {
      var item = document.createElement("li");
      var span = document.createElement("span");
      span.textContent = name + " ";
      var remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove " + name + " from " + g.name);
      remove.addEventListener("click", function () {
        remove.disabled = true;
        api("DELETE", path + "/users", { users: [name] }).then(function () {
          say("Removed " + name + " from " + g.name + ".");
          loadGroups();
          loadUsers();
        }, function (err) {
          remove.disabled = false;
          say("Could not remove " + name + ": " + err.message, true);
        });
      });
      item.appendChild(span);
      item.appendChild(remove);
      list.appendChild(item);
    });
    var input = row.querySelector(".add-member-name");
    input.id = "add-member-" + i;
    row.querySelector(".add-member-label").setAttribute("for", input.id);
    row.querySelector(".add-member").addEventListener("submit", function (evt) {
      evt.preventDefault();
      var name = input.value.trim();
      if (!name) { return; }
      api("POST", path + "/users", { users: [name] }).then(function () {
        say("Added " + name + " to " + g.name + ".");
        loadGroups();
      }, function (err) {
        say("Could not add " + name + ": " + err.message, true);
      });
    });
    var text = row.querySelector(".properties-text");
    text.id = "group-properties-" + i;
    row.querySelector(".properties-label").setAttribute("for", text.id);
    text.value = JSON.stringify(g.properties || {}, null, 2);
    row.querySelector(".properties").addEventListener("submit", function (evt) {
      evt.preventDefault();
      var value;
      try { value = JSON.parse(text.value || "{}"); } catch (e) {
        say("The properties are not valid JSON: " + e.message, true);
        text.focus();
        return;
      }
      if (!value || typeof value !== "object" || Array.isArray(value)) {
        say("The properties must be a JSON object.", true);
        text.focus();
        return;
      }
      api("PUT", path + "/properties", value).then(function () {
        say("Saved the properties of " + g.name + ".");
        loadGroups();
      }, function (err) {
        say("Could not save the properties: " + err.message, true);
      });
    });
    row.querySelector(".delete-group").addEventListener("click", function () {
      if (!window.confirm("Delete the group " + g.name + "? Its members are not deleted.")) { return; }
      api("DELETE", path).then(function () {
        say("Deleted the group " + g.name + ".");
        delete groups.open[g.name];
        loadGroups();
        loadUsers();
      }, function (err) {
        say("Could not delete " + g.name + ": " + err.message, true);
      });
    });
    return row;
  }

  var groupTimer = null;
  byId("group-filter").addEventListener("input", function () {
    window.clearTimeout(groupTimer);
    groupTimer = window.setTimeout(function () {
      groups.filter = byId("group-filter").value.trim();
      groups.offset = 0;
      loadGroups();
    }, 250);
  });
  byId("group-search").addEventListener("submit", function (evt) {
    evt.preventDefault();
    groups.filter = byId("group-filter").value.trim();
    groups.offset = 0;
    loadGroups();
  });
  byId("groups-prev").addEventListener("click", function () {
    groups.offset = Math.max(0, groups.offset - groups.limit);
    loadGroups();
  });
  byId("groups-next").addEventListener("click", function () {
    groups.offset += groups.limit;
    loadGroups();
  });
  byId("new-group-form").addEventListener("submit", function (evt) {
    evt.preventDefault();
    var name = byId("new-group-name").value.trim();
    if (!name) { return; }
    api("POST", "groups/" + enc(name), {}).then(function () {
      say("Created the group " + name + ".");
      byId("new-group-name").value = "";
      groups.open[name] = true;
      loadGroups();
    }, function (err) {
      say("Could not create the group " + name + ": " + err.message, true);
    });
  });

  loadUsers();
  loadGroups();
})();
