// stageflow dashboard: live updates over Server-Sent Events, no build step.
// On each "change" event the page's live part is fetched again (server-rendered, escaped HTML)
// and only the sections whose data-key changed are replaced, so typed feedback survives.
(function () {
  "use strict";
  var liveUrl = document.body.getAttribute("data-live");
  var badge = document.getElementById("live-state");
  if (!liveUrl || !window.EventSource) { return; }

  function setState(text) { if (badge) { badge.textContent = text; badge.className = "live-state " + text; } }

  function refresh() {
    var live = document.getElementById("live");
    var src = live ? live.getAttribute("data-src") : window.location.pathname + window.location.search;
    fetch(src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        if (!live) {
          var main = document.querySelector("main");
          var fresh = doc.querySelector("main");
          if (main && fresh) { main.replaceWith(fresh); }
          return;
        }
        doc.querySelectorAll("section[id]").forEach(function (next) {
          var cur = document.getElementById(next.id);
          if (!cur) { live.appendChild(document.importNode(next, true)); return; }
          if (cur.getAttribute("data-key") !== next.getAttribute("data-key")) {
            cur.replaceWith(document.importNode(next, true));
          }
        });
        document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || 0) + 1));
      })
      .catch(function () { setState("error"); });
  }

  var es = new EventSource(liveUrl, { withCredentials: true });
  es.addEventListener("open", function () { setState("live"); });
  es.addEventListener("error", function () { setState("reconnecting"); });
  es.addEventListener("change", refresh);
})();
