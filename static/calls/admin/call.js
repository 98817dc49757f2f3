// The call page: a click on a line of the conversation (or a bar of the timeline) plays the
// recording from there; while it plays, the line being spoken is highlighted and the playhead
// moves along the timeline. Seeking works because the recording endpoint serves byte ranges.
(function () {
  "use strict";

  const audio = document.getElementById("bo-audio");
  if (!audio) {
    return;
  }
  const turns = Array.from(document.querySelectorAll("#bo-transcript .bo-turn"));
  const timeline = document.getElementById("bo-timeline");
  const playhead = document.getElementById("bo-playhead");

  function seek(ms) {
    audio.currentTime = ms / 1000;
    const playing = audio.play();
    if (playing) {
      // Autoplay rules or a missing audio device may refuse; the seek has happened anyway.
      playing.catch(function () {});
    }
  }

  document.addEventListener("click", function (event) {
    const target = event.target.closest("[data-seek-ms]");
    if (!target) {
      return;
    }
    event.preventDefault();
    seek(Number(target.dataset.seekMs));
  });

  function showPosition() {
    const ms = audio.currentTime * 1000;
    let current = null;
    for (const turn of turns) {
      const start = Number(turn.dataset.startMs);
      const end = Number(turn.dataset.endMs);
      turn.classList.toggle("is-playing", start <= ms && ms <= end);
      if (start <= ms && ms <= end) {
        current = turn;
      }
    }
    if (current && !audio.paused) {
      current.scrollIntoView({ block: "nearest" });
    }
    if (timeline && playhead) {
      const left = Number(timeline.dataset.left);
      const right = Number(timeline.dataset.right);
      const duration = Number(timeline.dataset.durationMs);
      const x = left + Math.min(1, ms / duration) * (right - left);
      playhead.setAttribute("x1", x.toFixed(2));
      playhead.setAttribute("x2", x.toFixed(2));
    }
  }

  audio.addEventListener("timeupdate", showPosition);
  audio.addEventListener("seeked", showPosition);
})();
