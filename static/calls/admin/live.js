// The live calls page, fed by the /api/status Server-Sent Events stream.
//
// Rows are drawn by the server (the page's ?fragment=rows), in one place: the script re-reads
// them when the feed (re)connects, since the feed keeps no history and a reconnecting client
// must catch up by itself, and when it hears of a call it has no row for. Transcript lines and
// status changes are applied to the row in place; an ended call leaves the table and joins
// the "just ended" list. Everything from the feed is inserted as text, never as markup.
(function () {
  "use strict";

  const root = document.getElementById("bo-live");
  if (!root || !window.EventSource) {
    return;
  }
  const rows = document.getElementById("bo-live-rows");
  const empty = document.getElementById("bo-live-empty");
  const count = document.getElementById("bo-live-count");
  const ended = document.getElementById("bo-live-ended");
  const state = document.getElementById("bo-live-state");
  const clockOffset = Number(root.dataset.serverNow) - Date.now();
  const TERMINAL = new Set(["completed", "busy", "failed", "no-answer", "canceled"]);
  const ENDED_KEPT = 10;
  // Times as the server writes them (its time zone, 24-hour), whatever the browser's zone.
  const timeOfDay = new Intl.DateTimeFormat("en-GB", {
    timeZone: root.dataset.timeZone || undefined,
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  });
  const FADE_MS = 1500;

  function rowOf(callId) {
    return rows.querySelector('tr[data-call-id="' + CSS.escape(callId) + '"]');
  }

  function refreshCount() {
    const live = rows.querySelectorAll("tr[data-call-id]:not(.is-ending)").length;
    count.textContent = String(live);
    empty.hidden = live > 0;
  }

  function clock(ms) {
    const total = Math.max(0, Math.floor(ms / 1000));
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const seconds = String(total % 60).padStart(2, "0");
    return hours ? hours + ":" + String(minutes).padStart(2, "0") + ":" + seconds
      : minutes + ":" + seconds;
  }

  function tick() {
    const now = Date.now() + clockOffset;
    for (const cell of rows.querySelectorAll("[data-since-ms]")) {
      cell.textContent = clock(now - Number(cell.dataset.sinceMs));
    }
  }

  let reading = false;
  let readAgain = false;
  async function resync() {
    if (reading) {
      readAgain = true;
      return;
    }
    reading = true;
    try {
      const response = await fetch(root.dataset.rowsUrl, { credentials: "same-origin" });
      if (response.ok) {
        rows.innerHTML = await response.text();  // our own server's template, escaped there
        refreshCount();
        tick();
      }
    } catch (error) {
      setState("reconnecting", "Could not read the calls in progress; retrying with the feed.");
    } finally {
      reading = false;
      if (readAgain) {
        readAgain = false;
        resync();
      }
    }
  }

  function setState(name, text) {
    state.dataset.state = name;
    state.textContent = text;
  }

  // As the server labels them (Django's TextChoices labels of calls.models.CallStatus).
  const STATUS_LABELS = {
    "queued": "Queued", "ringing": "Ringing", "in-progress": "In Progress",
    "completed": "Completed", "busy": "Busy", "failed": "Failed",
    "no-answer": "No Answer", "canceled": "Canceled",
  };

  function badge(kind, value) {
    const span = document.createElement("span");
    span.className = "bo-badge bo-" + kind + "--" + (value || "unknown");
    span.textContent = (kind === "status" && STATUS_LABELS[value]) || value || "unknown";
    return span;
  }

  function showLatestLine(row, lines) {
    const latest = lines.reduce((a, b) => (b.start_ms >= a.start_ms ? b : a));
    const cell = row.querySelector('[data-field="last"]');
    const who = document.createElement("span");
    who.className = "bo-who";
    who.textContent = latest.speaker;
    const text = latest.text.length > 140 ? latest.text.slice(0, 139) + "\u2026" : latest.text;
    cell.replaceChildren(who, " " + text);
  }

  function addTo(row, field, amount) {
    const cell = row.querySelector('[data-field="' + field + '"]');
    cell.textContent = String((Number(cell.textContent) || 0) + amount);
  }

  function endRow(callId, data) {
    const row = rowOf(callId);
    const item = document.createElement("li");
    item.dataset.callId = callId;
    const link = document.createElement("a");
    link.href = root.dataset.changeUrl.replace(root.dataset.placeholderId, callId);
    const cells = row ? row.querySelectorAll("td") : [];
    link.textContent = cells.length
      ? cells[2].textContent + " \u2192 " + cells[3].textContent
      : "call " + callId.slice(0, 8);
    const when = document.createElement("span");
    when.className = "bo-quiet";
    when.textContent = " " + timeOfDay.format(new Date(Date.now() + clockOffset)) + " \u00b7 "
      + (data.reason || data.status || "ended") + " ";
    item.append(link, when);
    if ("sentiment_label" in data) {
      const detail = document.createElement("span");
      detail.className = "bo-quiet";
      const latency = data.latency_ms_avg == null ? "-" : Math.round(data.latency_ms_avg) + " ms";
      detail.textContent = " barge-ins " + (data.interruptions ?? "-") + " \u00b7 " + latency;
      item.append(badge("sentiment", data.sentiment_label), detail);
    }
    const previous = ended.querySelector('li[data-call-id="' + CSS.escape(callId) + '"]');
    if (previous) {
      previous.remove();
    }
    ended.prepend(item);
    while (ended.children.length > ENDED_KEPT) {
      ended.lastElementChild.remove();
    }
    if (row && !row.classList.contains("is-ending")) {
      row.classList.add("is-ending");
      setTimeout(function () {
        row.remove();
        refreshCount();
      }, FADE_MS);
    }
    refreshCount();
  }

  const handlers = {
    "call.started": function (data) {
      if (!rowOf(data.call_id)) {
        resync();
      }
    },
    "call.updated": function (data) {
      const row = rowOf(data.call_id);
      if (!row) {
        if (!(data.status && TERMINAL.has(data.status))) {
          resync();
        }
        return;
      }
      if (data.status) {
        row.querySelector('[data-field="status"]').replaceChildren(badge("status", data.status));
        if (TERMINAL.has(data.status)) {
          endRow(data.call_id, data);
        }
      }
      if (Array.isArray(data.transcripts) && data.transcripts.length) {
        showLatestLine(row, data.transcripts);
        addTo(row, "lines", data.transcripts.length);
        const cut = data.transcripts.filter((line) => line.interrupted).length;
        if (cut) {
          addTo(row, "interruptions", cut);
        }
      }
    },
    "call.ended": function (data) {
      endRow(data.call_id, data);
    },
  };

  const feed = new EventSource(root.dataset.feedUrl);
  feed.addEventListener("open", function () {
    setState("live", "Live: calls appear and update as they happen.");
    resync();
  });
  feed.addEventListener("error", function () {
    if (feed.readyState === EventSource.CLOSED) {
      setState("closed", "The live feed refused this page (signed out?). Reload to try again.");
    } else {
      setState("reconnecting", "The live feed dropped; reconnecting\u2026");
    }
  });
  for (const [kind, handle] of Object.entries(handlers)) {
    feed.addEventListener(kind, function (event) {
      handle(JSON.parse(event.data));
    });
  }

  refreshCount();
  tick();
  setInterval(tick, 1000);
})();
