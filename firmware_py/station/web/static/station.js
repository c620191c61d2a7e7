// The station's live parts over server-sent events: the live event stream (/events), the door tiles (/),
// the alarm queue (/alarms) and, on every page, the count of open alarms (menu and title), the
// announcement and the sound of a new alarm, and the door commands with their confirmation and the
// door's answer. No framework, no build step. Text goes in with textContent; the only HTML taken
// from the server is the "who is inside" list and the queue's rows, which the server escapes.
"use strict";

(function () {
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  if (!csrfMeta) return;  // the login page
  var csrf = csrfMeta.content;
  var stream = document.getElementById("stream");
  var overview = document.getElementById("overview");
  var queue = document.getElementById("open-alarms");
  var state = document.getElementById("stream-state");
  var lost = document.getElementById("stream-lost");
  var news = document.getElementById("alarm-news");
  var holder = stream || overview || queue;
  var titleBase = document.querySelector("title").dataset.title || document.title;

  // ---------------------------------------------------------------- sound (WebAudio, no file)
  var SOUND_KEY = "station.alarm-sound";
  var soundSwitch = document.getElementById("sound-switch");
  var audio = null;

  function soundOn() {
    try { return window.localStorage.getItem(SOUND_KEY) === "on"; } catch (e) { return false; }
  }

  function audioContext() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!audio) audio = new Ctx();
    if (audio.state === "suspended") audio.resume();
    return audio;
  }

  function showSwitch() {
    if (!soundSwitch) return;
    var on = soundOn();
    soundSwitch.setAttribute("aria-pressed", on ? "true" : "false");
    soundSwitch.textContent = on ? "告警声音：开 Alarm sound: on" : "开启告警声音 Enable alarm sound";
  }

  var lastTone = 0;

  // Each kind of alarm has its sound: "alarm" three short beeps; "duress" (a person forced to open
  // the door) a rising siren, longer and never held back by the beeps of other alarms.
  var SOUNDS = {
    alarm: function (ctx, t) {
      [0, 0.3, 0.6].forEach(function (start, i) {
        beep(ctx, "square", t + start, 0.25, i % 2 ? 660 : 880, i % 2 ? 660 : 880);
      });
    },
    duress: function (ctx, t) {
      [0, 0.5, 1.0, 1.5].forEach(function (start) { beep(ctx, "sawtooth", t + start, 0.45, 500, 1500); });
    }
  };

  function beep(ctx, type, at, length, from, to) {
    var osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.type = type;
    osc.frequency.setValueAtTime(from, at);
    if (to !== from) osc.frequency.linearRampToValueAtTime(to, at + length);
    gain.gain.setValueAtTime(0.15, at);
    gain.gain.exponentialRampToValueAtTime(0.001, at + length);
    osc.connect(gain).connect(ctx.destination);
    osc.start(at);
    osc.stop(at + length + 0.01);
  }

  function tone(kind) {
    // Browsers let a page sound only after a click on it: the switch is that click, remembered.
    // A burst of alarms sounds once (at most one tone each 1.5 s); a duress always sounds.
    kind = SOUNDS[kind] ? kind : "alarm";
    if (!soundOn() || (kind !== "duress" && Date.now() - lastTone < 1500)) return;
    lastTone = Date.now();
    // what the page sounded, for a person's tools and the tests (no audio device needed to read it)
    document.body.dataset.sounds = String(Number(document.body.dataset.sounds || "0") + 1);
    document.body.dataset.lastSound = kind;
    try {
      var ctx = audioContext();
      if (!ctx) return;
      SOUNDS[kind](ctx, ctx.currentTime);
    } catch (e) { /* no audio output: the page still shows and announces the alarm */ }
  }

  if (soundSwitch) {
    showSwitch();
    soundSwitch.addEventListener("click", function () {
      try { window.localStorage.setItem(SOUND_KEY, soundOn() ? "off" : "on"); } catch (e) { return; }
      showSwitch();
      if (soundOn()) { audioContext(); lastTone = 0; tone("alarm"); }
    });
    if (soundOn()) {  // remembered: the first click or key on the page lets it sound
      var unlock = function () { audioContext(); document.removeEventListener("click", unlock, true);
        document.removeEventListener("keydown", unlock, true); };
      document.addEventListener("click", unlock, true);
      document.addEventListener("keydown", unlock, true);
    }
  }

  // ---------------------------------------------------------------- the count of open alarms
  function setCount(n) {
    document.title = (n ? "(" + n + ") " : "") + titleBase;
    document.querySelectorAll("[data-open-alarms]").forEach(function (el) {
      el.textContent = String(n);
      if (el.closest("nav")) el.hidden = !n;
    });
  }

  function setTileAlarm(tile, text) {
    var on = text ? "true" : "false";
    if (tile.dataset.alarm !== on) tile.dataset.alarm = on;
    var line = tile.querySelector('[data-field="alarm"]');
    if (line && line.textContent !== text) { line.textContent = text; }
    if (line) line.hidden = !text;
  }

  function findTile(site, door) {
    return overview && overview.querySelector('.tile[data-site="' + CSS.escape(site) + '"][data-door="' +
      CSS.escape(door) + '"]');
  }

  // ---------------------------------------------------------------- the queue
  var template = document.createElement("template");
  var picked = 0;

  function renderQueue(rows) {
    var body = queue.tBodies[0];
    var existing = {};
    Array.prototype.forEach.call(body.rows, function (tr) { existing[tr.dataset.key] = tr; });
    var keep = {};
    var active = document.activeElement;
    rows.forEach(function (r, i) {
      var tr = existing[r.key];
      if (!tr) {
        template.innerHTML = r.html;  // escaped by the server
        tr = template.content.firstElementChild;
        var box = tr.querySelector('input[type="checkbox"]');
        if (box) box.name = "pick-live-" + (picked++);  // each chosen alarm is its own field
        tr.classList.add("arrived");
      }
      keep[r.key] = true;
      var at = body.rows[i];
      if (at !== tr) body.insertBefore(tr, at || null);
    });
    Object.keys(existing).forEach(function (key) {
      var tr = existing[key];
      if (keep[key]) return;
      if (active && tr.contains(active)) tr.classList.add("gone");  // being typed in: left until done
      else tr.remove();
    });
    var shown = document.getElementById("queue-shown");
    if (shown) shown.textContent = String(rows.length);
    var none = document.getElementById("no-open-alarms");
    if (none) none.hidden = rows.length > 0;
  }

  function movePaging(before) {
    // the live page's next cursor: rows pushed off this page by new alarms stay on the next one
    document.querySelectorAll('a[data-page="earlier"]').forEach(function (a) {
      if (before !== null && before !== undefined) {
        var u = new URL(a.href, window.location.href);
        u.searchParams.set("before", String(before));
        a.href = u.pathname + u.search;
      }
      a.hidden = before === null || before === undefined;
    });
    document.querySelectorAll('[data-page="first"]').forEach(function (el) {
      el.hidden = !(before === null || before === undefined);
    });
  }

  if (queue) {
    var all = document.getElementById("pick-all");
    if (all) all.addEventListener("change", function () {
      queue.querySelectorAll('tbody input[type="checkbox"]').forEach(function (box) { box.checked = all.checked; });
    });
    var bulk = document.getElementById("bulk-ack");
    if (bulk) bulk.addEventListener("submit", function (ev) {
      if (!document.querySelector('input[form="bulk-ack"]:checked')) {
        ev.preventDefault();
        window.alert("请先选择告警 Choose the alarms to acknowledge first");
      }
    });
  }

  // ---------------------------------------------------------------- door commands: confirm, send, the answer
  var LABELS = {lockdown: "封锁 lock down", release_lockdown: "解除封锁 release the lockdown of",
                revoke: "撤销授权 revoke a person at"};
  var dialog = null;

  function confirmCommand(text, then) {
    if (!dialog) {
      dialog = document.createElement("dialog");
      dialog.id = "confirm-command";
      var p = document.createElement("p");
      var yes = document.createElement("button");
      yes.type = "button"; yes.dataset.confirm = "true"; yes.textContent = "确认发送 Confirm";
      var no = document.createElement("button");
      no.type = "button"; no.dataset.cancel = "true"; no.textContent = "取消 Cancel";
      dialog.appendChild(p); dialog.appendChild(yes); dialog.appendChild(no);
      no.addEventListener("click", function () { dialog.close(); });
      document.body.appendChild(dialog);
    }
    dialog.querySelector("p").textContent = text;
    var yesButton = dialog.querySelector("[data-confirm]");
    var fresh = yesButton.cloneNode(true);  // one handler: this command's
    yesButton.replaceWith(fresh);
    fresh.addEventListener("click", function () { dialog.close(); then(); });
    dialog.showModal();
    fresh.focus();
  }

  function say(el, text, kind) {
    if (!el) return;
    el.textContent = text;
    el.dataset.state = kind;
  }

  function awaitAnswer(id, el, deadline) {
    fetch("/api/commands/" + encodeURIComponent(id), {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (a) {
        if (a.answered) {
          say(el, a.ok ? "门已执行 Done by the door" : "门拒绝 Refused by the door: " + (a.error || ""),
            a.ok ? "done" : "refused");
        } else if (Date.now() > deadline) {
          say(el, "门 10 秒内未答复 No answer from the door within 10 s", "no-answer");
        } else {
          setTimeout(function () { awaitAnswer(id, el, deadline); }, 300);
        }
      })
      .catch(function () { say(el, "无法查询答复 Cannot ask for the answer", "no-answer"); });
  }

  function send(form, el) {
    say(el, "发送中 Sending…", "sending");
    fetch("/api" + form.getAttribute("action"), {
      method: "POST", credentials: "same-origin",
      headers: {"X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded"},
      body: new URLSearchParams(new FormData(form)).toString()
    }).then(function (r) {
      return r.json().then(function (j) { return {status: r.status, body: j}; });
    }).then(function (r) {
      if (r.status !== 200) { say(el, "未发送 Not sent: " + (r.body.error || r.status), "not-sent"); return; }
      say(el, "已发送，等待门的答复 Sent: waiting for the door's answer…", "sent");
      awaitAnswer(r.body.id, el, Date.now() + 10000);
    }).catch(function () { say(el, "未发送 Not sent: the station cannot be reached", "not-sent"); });
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var button = ev.submitter || form.querySelector("button[data-action]");
    var action = button && button.dataset.action;
    if (!LABELS[action]) return;
    ev.preventDefault();
    var tile = form.closest(".tile");
    var el = tile ? tile.querySelector("[data-command-state]") : null;
    var door = tile ? tile.dataset.door : "";
    if (tile && tile.dataset.online === "false") {
      say(el, "门离线，未发送 " + door + " is offline: nothing was sent", "not-sent");
      return;
    }
    var who = form.querySelector('input[name="person_id"]');
    confirmCommand("确认" + LABELS[action] + " " + door + (who ? " (" + who.value + ")" : "") + "? Confirm?",
      function () { send(form, el); });
  });

  // ---------------------------------------------------------------- the stream
  var url = "/api/stream?after=" + encodeURIComponent(holder ? (holder.dataset.lastId || "0") : "now") +
    (overview ? "&doors=1" : "") + (queue ? "&queue=1" + (queue.dataset.query ? "&" + queue.dataset.query : "") : "");
  var source = new EventSource(url);

  function showLost(isLost) {
    if (lost) {
      lost.hidden = !isLost;
      lost.textContent = isLost ? "与监控站的连接中断，页面内容可能已过时 Lost the station: what this page shows may be out of date" : "";
    }
    document.body.dataset.stream = isLost ? "lost" : "live";
    var broker = document.getElementById("broker");
    if (broker && isLost) {
      broker.dataset.connected = "unknown";
      broker.textContent = "消息代理 Broker: 未知 unknown (与监控站的连接中断 lost the station)";
    }
  }

  source.onopen = function () { if (state) state.textContent = "已连接 live"; showLost(false); };
  source.onerror = function () { if (state) state.textContent = "重新连接中 reconnecting…"; showLost(true); };

  source.addEventListener("event", function (msg) {
    if (holder) holder.dataset.lastId = msg.lastEventId;
    var e = JSON.parse(msg.data);
    if (e.alarm) {
      if (news) news.textContent = (e.sound === "duress" ? "胁迫报警 DURESS: " : "新告警 New alarm: ") + e.site + "/" +
        e.door + " " + e.cells[3];
      tone(e.sound);
    }
    if (!stream) return;
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

  source.addEventListener("alarms", function (msg) {
    var data = JSON.parse(msg.data);
    setCount(data.count);
    if (overview) {
      var texts = {};
      data.doors.forEach(function (d) { texts[d.site + "\u0000" + d.door] = d.text; });
      overview.querySelectorAll(".tile").forEach(function (tile) {
        setTileAlarm(tile, texts[tile.dataset.site + "\u0000" + tile.dataset.door] || "");
      });
    }
    if (queue && data.rows) {
      renderQueue(data.rows);
      movePaging(data.before);
    }
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
      var tile = findTile(t.site, t.door);
      if (!tile) { unknown = true; return; }
      tile.dataset.online = t.online ? "true" : "false";
      setTileAlarm(tile, t.alarm_text || "");
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
