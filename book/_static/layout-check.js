// A hook for the book's browser test, inert for readers: only when the address ends in
// "?layoutcheck" does it measure which code, output and table blocks scroll sideways at the
// window's width, and write the list into the page (data-layout-overflow on <body>).
(function () {
  "use strict";
  if (!/[?&]layoutcheck\b/.test(window.location.search)) {
    return;
  }
  function describe(el) {
    var text = (el.textContent || "").replace(/\s+/g, " ").trim();
    return el.tagName.toLowerCase() + ": " + text.slice(0, 80);
  }
  function measure() {
    var wide = [];
    document.querySelectorAll("article pre, article table").forEach(function (el) {
      if (el.scrollWidth > el.clientWidth + 1) {
        wide.push(describe(el));
      }
    });
    document.body.setAttribute("data-layout-overflow", JSON.stringify(wide));
  }
  window.addEventListener("load", function () {
    window.setTimeout(measure, 1000);  // after MathJax has typeset the page
  });
})();
