// Instants the server wrote in the shop's zone, with their UTC offset (<time class="local-time">), shown in the
// buyer's own clock and zone. Without JavaScript the server's text stays, which is unambiguous too.
(function () {
  "use strict";
  var langs = [document.documentElement.lang, "en"];
  var options = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
  var times = document.querySelectorAll("time.local-time[datetime]");
  for (var i = 0; i < times.length; i++) {
    var at = Date.parse(times[i].getAttribute("datetime"));
    if (isNaN(at)) continue;
    try { times[i].textContent = new Date(at).toLocaleString(langs, options); } catch (e) { /* keep the server's text */ }
  }
})();
