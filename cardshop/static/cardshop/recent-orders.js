// Orders bought in this browser, kept in localStorage for the lookup page: a convenience only. The order page
// still asks for whatever access it asks for today. Only the order number, product name and creation time
// are kept: never a card secret, the query password or the email. Every label comes from the page (translated
// on the server); nothing here is shown to buyers as written.
(function () {
  "use strict";
  var KEY = "cardshop.recentOrders";
  var MAX = 10;
  var ORDER_NO = /^[A-Za-z0-9_-]{1,32}$/;

  function valid(e) {
    return e && typeof e === "object" && typeof e.order_no === "string" && ORDER_NO.test(e.order_no) &&
      typeof e.product === "string" && typeof e.created === "string";
  }

  function read() {
    try {
      var list = JSON.parse(window.localStorage.getItem(KEY) || "[]");
      if (!Array.isArray(list)) return [];
      // Rebuilt with the allowed keys only, whatever an older version or another script left there.
      return list.filter(valid).map(function (e) {
        return { order_no: e.order_no, product: e.product.slice(0, 200), created: e.created.slice(0, 40) };
      });
    } catch (e) {
      return []; // storage disabled (private mode, policy) or unreadable: no list
    }
  }

  function write(list) {
    try { window.localStorage.setItem(KEY, JSON.stringify(list)); } catch (e) { /* full or disabled */ }
  }

  function remember(el) {
    var entry = { order_no: el.dataset.orderNo || "", product: el.dataset.product || "", created: el.dataset.created || "" };
    if (!valid(entry)) return;
    var list = read().filter(function (e) { return e.order_no !== entry.order_no; });
    list.unshift(entry); // a tie on the second keeps the one just seen first (the sort is stable)
    list.sort(function (a, b) { return a.created < b.created ? 1 : a.created > b.created ? -1 : 0; }); // newest first
    write(list.slice(0, MAX));
  }

  function localDate(iso) {
    var at = Date.parse(iso);
    if (isNaN(at)) return "";
    try {
      return new Date(at).toLocaleDateString([document.documentElement.lang, "en"], { year: "numeric", month: "2-digit", day: "2-digit" });
    } catch (e) {
      return iso.slice(0, 10);
    }
  }

  function show(box) {
    var list = read();
    var ul = box.querySelector(".recent-orders-list");
    ul.textContent = "";
    box.hidden = list.length === 0;
    list.forEach(function (e) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = box.dataset.orderUrl.replace("ORDER-NO", encodeURIComponent(e.order_no));
      a.className = "order-no";
      a.textContent = e.order_no;
      li.appendChild(a);
      var rest = [e.product, localDate(e.created)].filter(Boolean).join(" \u00b7 ");
      if (rest) li.appendChild(document.createTextNode(" \u00b7 " + rest));
      ul.appendChild(li);
    });
  }

  var seen = document.getElementById("recent-order");
  if (seen) remember(seen);

  var box = document.getElementById("recent-orders");
  if (box) {
    show(box);
    box.querySelector(".recent-orders-forget").addEventListener("click", function () {
      try { window.localStorage.removeItem(KEY); } catch (e) { /* nothing kept anyway */ }
      show(box);
    });
  }
})();
