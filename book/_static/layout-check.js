// A hook for the book's browser test, inert for readers: only when the address ends in
// "?layoutcheck" does it measure the page at the window's width and write what it found
// into the page, as JSON attributes of <body>:
//   data-layout-overflow  code, output and table blocks that scroll sideways;
//   data-layout-figures   every image of the article: its natural and shown width, and
//                         whether it sits in a figure with a number and a caption;
//   data-layout-equations display equations wider than the column.
(function () {
  "use strict";
  if (!/[?&]layoutcheck\b/.test(window.location.search)) {
    return;
  }
  function describe(el) {
    var text = (el.textContent || "").replace(/\s+/g, " ").trim();
    return el.tagName.toLowerCase() + ": " + text.slice(0, 80);
  }
  function figureOf(img) {
    var fig = img.closest("figure");
    var caption = fig ? fig.querySelector("figcaption .caption-text") : null;
    var number = fig ? fig.querySelector("figcaption .caption-number") : null;
    return {
      src: img.getAttribute("src") || "",
      alt: img.getAttribute("alt") || "",
      natural: img.naturalWidth,
      shown: img.getBoundingClientRect().width,
      caption: caption ? caption.textContent.trim() : "",
      number: number ? number.textContent.trim() : ""
    };
  }
  function measure() {
    var wide = [];
    document.querySelectorAll("article pre, article table").forEach(function (el) {
      if (el.scrollWidth > el.clientWidth + 1) {
        wide.push(describe(el));
      }
    });
    var figures = [];
    document.querySelectorAll("article img").forEach(function (img) {
      figures.push(figureOf(img));
    });
    var equations = [];
    document.querySelectorAll("article mjx-container[display='true']").forEach(function (el) {
      var math = el.querySelector("mjx-math") || el;
      var column = el.parentElement.getBoundingClientRect().width;
      var width = math.getBoundingClientRect().width;
      if (width > column + 1) {
        var tex = el.closest(".math") ? el.closest(".math").getAttribute("data-tex") : "";
        equations.push({width: Math.round(width), column: Math.round(column),
                        text: (tex || el.textContent || "").slice(0, 80)});
      }
    });
    document.body.setAttribute("data-layout-overflow", JSON.stringify(wide));
    document.body.setAttribute("data-layout-figures", JSON.stringify(figures));
    document.body.setAttribute("data-layout-equations", JSON.stringify(equations));
  }
  window.addEventListener("load", function () {
    window.setTimeout(measure, 1000);  // after MathJax has typeset the page
  });
})();
