// The console's only script (htmx does the rest). Two small jobs:
// 1. keep relative times ("3 minutes ago") current; the exact time stays in the title;
// 2. skip timeline rows the page already has: after a socket reconnect the server replays
//    from the seq the page was rendered at, and a row must not appear twice.
(function () {
  "use strict";
  var UNITS = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
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
  function refresh(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (!isNaN(date)) el.textContent = relative(date);
    });
  }
  setInterval(refresh, 30000);
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var fragment = event.detail.fragment;
    if (!fragment || !fragment.querySelectorAll) return;
    fragment.querySelectorAll("li.frame[id]").forEach(function (row) {
      if (document.getElementById(row.id)) row.remove();
    });
  });
})();
