// The console's only script (htmx does the rest). Its jobs:
// 1. times: relative ones kept current, absolute ones (`time.clock`) in the browser's time
//    zone, countdowns (`time.countdown`) ticking every second, urgent in the last 2 minutes;
// 2. live updates that never lose what an operator typed: a card's state replaced while its
//    form has text keeps the text (and says it was not sent when someone else decided);
//    decided cards move out of the pending list; a live update never replaces a block the
//    operator's own request is about to swap, nor a state with one no newer;
// 3. signals: the tab title and the favicon carry the number waiting; a sound and a desktop
//    notification when one arrives, if this operator turned them on (off by default);
// 4. focus after an action or an error, keyboard shortcuts (j/k/a/r/?);
// 5. skip timeline rows the page already has (a socket reconnect replays from its seq).
(function () {
  "use strict";
  var UNITS = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
  var URGENT_SECONDS = 120;

  function relative(date) {
    var seconds = Math.round((Date.now() - date.getTime()) / 1000);
    var abs = Math.abs(seconds);
    if (abs < 45) return seconds >= 0 ? "just now" : "in a few seconds";
    for (var i = 0; i < UNITS.length; i++) {
      var n = Math.floor(abs / UNITS[i][1]);
      if (n >= 1) {
        var words = n + " " + UNITS[i][0] + (n === 1 ? "" : "s");
        return seconds >= 0 ? words + " ago" : "in " + words;
      }
    }
    return "just now";
  }

  function absolute(date) {
    var sameDay = new Date().toDateString() === date.toDateString();
    var options = { hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" };
    if (!sameDay) { options.year = "numeric"; options.month = "short"; options.day = "numeric"; }
    return date.toLocaleString(undefined, options);
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function left(date) {
    var seconds = Math.round((date.getTime() - Date.now()) / 1000);
    if (seconds <= 0) return [seconds, "due now"];
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return [seconds, (h ? h + ":" + pad(m) : m) + ":" + pad(s) + " left"];
  }

  function times(root, everything) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date)) return;
      if (el.classList.contains("countdown")) {
        var state = left(date);
        if (el.textContent !== state[1]) el.textContent = state[1];
        el.classList.toggle("urgent", state[0] < URGENT_SECONDS);
        el.setAttribute("title", "due " + absolute(date));
      } else if (el.classList.contains("clock")) {
        if (everything || !el.dataset.local) { el.textContent = absolute(date); el.dataset.local = "1"; }
        el.setAttribute("title", relative(date));
      } else if (everything) {
        el.textContent = relative(date);
      }
    });
  }

  // --- cards: keep typed text, move decided ones ---------------------------------------------

  function stateOf(node) {
    if (!node) return null;
    if (node.id && /^escalation-\d+-state$/.test(node.id)) return node;
    return node.querySelector ? node.querySelector("[id^='escalation-'][id$='-state']") : null;
  }

  function typedIn(state) {
    var typed = [];
    state.querySelectorAll("form.decide textarea").forEach(function (area) {
      if (area.value.trim()) typed.push(area);
    });
    return typed;
  }

  function unsentBlock(typed) {
    var block = document.createElement("div");
    block.className = "unsent";
    var notice = document.createElement("p");
    notice.className = "notice lost";
    notice.setAttribute("role", "status");
    notice.textContent = "Someone else decided this before you sent yours: what you typed was not sent.";
    block.appendChild(notice);
    typed.forEach(function (area) {
      var id = "unsent-" + area.id;
      var label = document.createElement("label");
      label.setAttribute("for", id);
      label.textContent = area.name === "note" ? "Your note (not sent)" : "Your instructions (not sent)";
      var copy = document.createElement("textarea");
      copy.id = id; copy.readOnly = true; copy.rows = 2;
      copy.textContent = area.value;
      block.appendChild(label); block.appendChild(copy);
    });
    return block;
  }

  var refocus = null;

  function carry(oldState, newState) {
    var active = document.activeElement;
    // The operator's own decision leaves focus on the state block itself: keep that too.
    if (active && active.id && oldState.contains(active)) {
      refocus = { id: active.id, start: active.selectionStart, end: active.selectionEnd };
    }
    // Where the operator's own answer said focus goes, if it has not gone there yet.
    var focus = oldState.getAttribute("data-focus");
    if (focus && !newState.hasAttribute("data-focus")) newState.setAttribute("data-focus", focus);
    if (newState.getAttribute("data-status") === "pending") {
      oldState.querySelectorAll("textarea").forEach(function (area) {
        var twin = newState.querySelector("#" + CSS.escape(area.id));
        if (twin && area.value && !twin.value) { twin.textContent = area.value; twin.value = area.value; }
      });
      return;
    }
    var kept = oldState.querySelectorAll(".notice.lost, .unsent");
    if (kept.length) {
      var anchor = newState.firstChild;
      kept.forEach(function (node) { newState.insertBefore(node.cloneNode(true), anchor); });
      return;
    }
    var typed = typedIn(oldState);
    if (typed.length) newState.insertBefore(unsentBlock(typed), newState.firstChild);
  }

  // A state's version, `status.approvals.tier[.decide]`, in the order it can only move:
  // decided after pending, then a higher tier, then more approvals.
  function rank(state) {
    var parts = (state.getAttribute("data-version") || "").split(".");
    return [parts[0] === "pending" ? 0 : 1, parseInt(parts[2], 10) || 0, parseInt(parts[1], 10) || 0];
  }

  // Whether a live copy of a state block should replace the one on the page: only when it
  // is newer, or the same state drawn for other permissions. A copy no newer than what the
  // page shows (the operator's own answer came first) would only wipe that answer's message
  // and the focus it set.
  function replaces(current, incoming) {
    if (!current.hasAttribute("data-version") || !incoming.hasAttribute("data-version")) return true;
    var a = rank(incoming), b = rank(current);
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] > b[i];
    return incoming.getAttribute("data-version") !== current.getAttribute("data-version");
  }

  // Blocks an htmx request of this page will swap (a decision, "I'm on it"), by id, and the
  // live copies that came for them meanwhile. htmx fires a request's events on the block it
  // targets: replaced under it, the answer (its message, where focus goes) would land in a
  // detached block. So the live copy waits for the answer and goes in after it if newer.
  var requested = {};
  var held = {};
  var ANSWER_WAIT_MS = 15000;  // an answer that never comes does not hold live copies back

  function waiting(id) {
    var request = requested[id];
    return !!request && Date.now() - request.since < ANSWER_WAIT_MS;
  }

  function applyLive(current, incoming) {
    var state = stateOf(incoming);
    if (state && state.id === current.id) {
      if (!replaces(current, state)) return false;
      carry(current, state);
    }
    return true;
  }

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var fragment = event.detail.fragment;
    if (!fragment || !fragment.querySelectorAll) return;
    fragment.querySelectorAll("li.frame[id]").forEach(function (row) {
      if (document.getElementById(row.id)) row.remove();
    });
    var target = event.detail.target;
    var incoming = fragment.firstElementChild || fragment;
    if (target && target.id && waiting(target.id) && incoming.outerHTML) {
      held[target.id] = incoming.outerHTML;
      event.preventDefault();
    } else if (target && incoming.getAttribute) {
      if (applyLive(target, incoming)) keepOpen(target, incoming);
      else event.preventDefault();
    }
  });

  // A live copy of a block keeps open what the operator opened in it (a <details>, such as
  // the snapshot's "Raw JSON"): live copies now come on every event, often just after a click.
  function keepOpen(current, incoming) {
    if (!incoming.querySelectorAll) return;
    var was = current.querySelectorAll("details");
    var now = incoming.querySelectorAll("details");
    for (var i = 0; i < was.length && i < now.length; i++) if (was[i].open) now[i].open = true;
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var target = event.detail.target;
    if (!target || !target.id) return;
    var request = requested[target.id] || (requested[target.id] = { count: 0 });
    request.count += 1;
    request.since = Date.now();
  });

  // Fired after the answer is swapped in (on the nearest block still in the page).
  document.addEventListener("htmx:afterRequest", function (event) {
    var id = event.detail.target && event.detail.target.id;
    if (!id || !requested[id]) return;
    if (--requested[id].count > 0) return;
    delete requested[id];
    var html = held[id];
    delete held[id];
    var current = document.getElementById(id);
    if (!html || !current) return;
    var holder = document.createElement("template");
    holder.innerHTML = html;
    var incoming = holder.content.firstElementChild;
    if (!incoming || !applyLive(current, incoming)) return;
    current.replaceWith(incoming);
    htmx.process(incoming);
  });

  function settleCards() {
    var decided = document.getElementById("decided-list");
    document.querySelectorAll("article.escalation").forEach(function (card) {
      var state = stateOf(card);
      if (!state) return;
      var status = state.getAttribute("data-status");
      if (!card.classList.contains("status-" + status)) {
        card.className = card.className.replace(/\bstatus-\S+/, "status-" + status);
      }
      if (status !== "pending" && decided && card.parentElement && card.parentElement.classList.contains("pending-list")) {
        var focused = document.activeElement;
        decided.appendChild(card);
        // Moving a card out of the pending list must not take the operator's focus with it.
        if (focused && card.contains(focused) && document.activeElement !== focused) focused.focus();
        document.getElementById("decided-section").hidden = false;
      }
    });
    var skip = document.querySelector(".skip-decision");
    if (skip) skip.hidden = !pendingCards().some(function (card) { return card.querySelector("button.approve"); });
    if (refocus) {
      // The operator was typing in a block a live update replaced: put the cursor back.
      var again = document.getElementById(refocus.id);
      if (again && !again.readOnly) {
        again.focus();
        if (refocus.start != null && again.setSelectionRange) again.setSelectionRange(refocus.start, refocus.end);
      }
      refocus = null;
    }
    var focusing = document.querySelector("[data-focus]");
    if (focusing) {
      var target = document.getElementById(focusing.getAttribute("data-focus"));
      focusing.removeAttribute("data-focus");
      if (target) target.focus();
    }
  }

  // --- signals ----------------------------------------------------------------------------------

  var baseTitle = document.title.replace(/^\(\d+\)\s*/, "");
  var lastCount = null;
  var baseIcon = null;

  function alertsKey() { return "ltpdash.alerts." + (document.body.getAttribute("data-operator") || ""); }
  function alerts() {
    try { return JSON.parse(localStorage.getItem(alertsKey())) || {}; } catch (e) { return {}; }
  }

  function badge(count) {
    var link = document.querySelector("link[rel=icon]");
    if (!link) return;
    if (baseIcon === null) baseIcon = link.getAttribute("href");
    if (!count) { link.setAttribute("href", baseIcon); return; }
    var canvas = document.createElement("canvas");
    canvas.width = canvas.height = 32;
    var g = canvas.getContext("2d");
    g.fillStyle = "#2f5bd3"; g.fillRect(0, 0, 32, 32);
    g.strokeStyle = "#fff"; g.lineWidth = 4; g.beginPath(); g.moveTo(8, 8); g.lineTo(8, 24); g.lineTo(20, 24); g.stroke();
    g.fillStyle = "#b3261e"; g.beginPath(); g.arc(22, 10, 10, 0, 2 * Math.PI); g.fill();
    g.fillStyle = "#fff"; g.font = "bold 14px sans-serif"; g.textAlign = "center"; g.textBaseline = "middle";
    g.fillText(count > 9 ? "9+" : String(count), 22, 11);
    link.setAttribute("href", canvas.toDataURL("image/png"));
  }

  function beep() {
    try {
      var audio = new (window.AudioContext || window.webkitAudioContext)();
      var tone = audio.createOscillator(), gain = audio.createGain();
      tone.frequency.value = 880; gain.gain.value = 0.1;
      tone.connect(gain); gain.connect(audio.destination);
      tone.start(); tone.stop(audio.currentTime + 0.25);
    } catch (e) { /* no audio here */ }
  }

  function signals() {
    var counter = document.getElementById("inbox-count");
    if (!counter) return;
    var count = parseInt(counter.textContent, 10) || 0;
    if (count === lastCount) return;
    document.title = (count ? "(" + count + ") " : "") + baseTitle;
    badge(count);
    if (lastCount !== null && count > lastCount) {
      var wanted = alerts();
      if (wanted.sound) beep();
      if (wanted.desktop && window.Notification && Notification.permission === "granted") {
        new Notification("ltpdash", { body: count + " escalation" + (count === 1 ? "" : "s") + " waiting for a decision" });
      }
    }
    lastCount = count;
  }

  function setUpAlerts() {
    var wanted = alerts();
    [["alert-sound", "sound"], ["alert-desktop", "desktop"]].forEach(function (pair) {
      var box = document.getElementById(pair[0]);
      if (!box) return;
      box.checked = !!wanted[pair[1]];
      box.addEventListener("change", function () {
        var now = alerts();
        now[pair[1]] = box.checked;
        localStorage.setItem(alertsKey(), JSON.stringify(now));
        if (pair[1] === "desktop" && box.checked && window.Notification && Notification.permission === "default") {
          Notification.requestPermission();
        }
      });
    });
  }

  // --- keyboard ---------------------------------------------------------------------------------

  function pendingCards() {
    return Array.prototype.filter.call(document.querySelectorAll("article.escalation"), function (card) {
      var state = stateOf(card);
      return state && state.getAttribute("data-status") === "pending";
    });
  }

  function currentCard() {
    var active = document.activeElement;
    return active && active.closest ? active.closest("article.escalation") : null;
  }

  function openHelp() {
    var help = document.getElementById("help");
    if (help && !help.open) help.showModal();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target.closest && target.closest("input, textarea, select, [contenteditable], dialog")) return;
    var cards = pendingCards();
    var card = currentCard();
    var index = cards.indexOf(card);
    var key = event.key;
    if (key === "?") { event.preventDefault(); openHelp(); return; }
    if (key === "j" || key === "k") {
      if (!cards.length) return;
      var next = key === "j" ? Math.min(index + 1, cards.length - 1) : Math.max(index - 1, 0);
      if (index === -1) next = 0;
      cards[next].focus();
      cards[next].scrollIntoView({ block: "nearest" });
      event.preventDefault();
      return;
    }
    card = index === -1 ? cards[0] : card;
    if (!card) return;
    if (key === "a") {
      var approve = card.querySelector("button.approve");
      if (approve) { event.preventDefault(); approve.click(); }
    } else if (key === "r") {
      var note = card.querySelector("form.decide textarea[name=note]");
      if (note) { event.preventDefault(); note.focus(); note.scrollIntoView({ block: "nearest" }); }
    }
  });

  // A live copy of a card is swapped in at once but bound by htmx only when it settles (a few
  // ms later): a decision submitted in between would leave the page as a plain form post.
  // Bind it now and let htmx send it, as for any other card.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !form.matches || !form.matches("form[hx-post]") || !window.htmx) return;
    event.preventDefault();
    var values = {};
    var submitter = event.submitter;
    if (submitter && submitter.name) values[submitter.name] = submitter.value;  // which verdict
    htmx.ajax("POST", form.getAttribute("hx-post"), { source: form, values: values });
  });

  document.addEventListener("click", function (event) {
    if (!event.target.closest) return;
    if (event.target.closest(".help-open")) openHelp();
    if (event.target.closest(".skip-decision")) {
      var first = pendingCards().map(function (card) { return card.querySelector("button.approve"); }).filter(Boolean)[0];
      if (first) { event.preventDefault(); first.focus(); first.scrollIntoView({ block: "nearest" }); }
    }
  });

  // --- wiring -----------------------------------------------------------------------------------

  var scheduled = false;
  function onChange() {
    if (scheduled) return;
    scheduled = true;
    setTimeout(function () {
      scheduled = false;
      settleCards();
      signals();
      times(document, false);
    });
  }

  function start() {
    times(document, true);
    settleCards();
    signals();
    setUpAlerts();
    new MutationObserver(onChange).observe(document.body, { childList: true, subtree: true, characterData: true });
    setInterval(function () { times(document, false); }, 1000);
    setInterval(function () { times(document, true); }, 30000);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
