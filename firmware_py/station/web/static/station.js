// The station's live parts: the live event stream (/events) and the door tiles (/) over
// server-sent events. No framework, no build step. Text goes in with textContent; the only HTML
// taken from the server is the "who is inside" list, which the server escapes.
"use strict";

(function () {
  var stream = document.getElementById("stream");
  var overview = document.getElementById("overview");
  var state = document.getElementById("stream-state");
  if (!stream && !overview) return;
  var holder = stream || overview;
  var url = "/api/stream?after=" + encodeURIComponent(holder.dataset.lastId || "0") + (overview ? "&doors=1" : "");
  var source = new EventSource(url);

  source.onopen = function () { if (state) state.textContent = "已连接 live"; };
  source.onerror = function () { if (state) state.textContent = "重新连接中 reconnecting…"; };

  source.addEventListener("event", function (msg) {
    holder.dataset.lastId = msg.lastEventId;
    if (!stream) return;
    var e = JSON.parse(msg.data);
    var body = stream.tBodies[0];
    var sel = 'tr[data-site="' + CSS.escape(e.site) + '"][data-door="' + CSS.escape(e.door) + '"][data-epoch="' +
      e.epoch + '"][data-seq="' + e.seq + '"]';
    if (body.querySelector(sel)) return;  // already shown
    var tr = document.createElement("tr");
    tr.dataset.site = e.site; tr.dataset.door = e.door; tr.dataset.epoch = String(e.epoch); tr.dataset.seq = String(e.seq); tr.dataset.type = e.type;
    if (e.category) tr.className = e.category;
    e.cells.forEach(function (text) {
      var td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    });
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > 1000) body.deleteRow(body.rows.length - 1);
  });

  source.addEventListener("doors", function (msg) {
    if (!overview) return;
    var data = JSON.parse(msg.data);
    var broker = document.getElementById("broker");
    if (broker) {
      broker.dataset.connected = data.broker_connected ? "true" : "false";
      broker.textContent = "消息代理 Broker: " + (data.broker_connected ? "已连接 connected" : "未连接 NOT connected");
    }
    var unknown = false;
    data.doors.forEach(function (t) {
      var tile = overview.querySelector('.tile[data-site="' + CSS.escape(t.site) + '"][data-door="' + CSS.escape(t.door) + '"]');
      if (!tile) { unknown = true; return; }
      tile.dataset.online = t.online ? "true" : "false";
      var problems = String(t.problems || 0);
      if (tile.dataset.problems !== problems) {  // refused messages and conflicting copies of the door
        tile.dataset.problems = problems;
        var badge = tile.querySelector("[data-problems-badge]");
        if (badge) { badge.textContent = problems + " 异常 problems"; badge.hidden = problems === "0"; }
      }
      Object.keys(t.fields).forEach(function (key) {
        var cell = tile.querySelector('[data-field="' + key + '"]');
        if (cell && cell.textContent !== t.fields[key]) cell.textContent = t.fields[key];
      });
      var inside = tile.querySelector(".inside-list");
      var active = document.activeElement;
      if (inside && inside.dataset.html !== t.inside_html && !(active && inside.contains(active))) {
        inside.innerHTML = t.inside_html;  // escaped by the server
        inside.dataset.html = t.inside_html;
      }
    });
    if (unknown) window.location.reload();  // a door reported for the first time
  });
})();
