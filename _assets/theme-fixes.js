// Makes the sidebar buttons work with pydata-sphinx-theme 0.17.1 and sphinx-book-theme 1.3.0 (the
// versions constraints.txt pins). pydata-sphinx-theme 0.17 renders its own `.primary-toggle` and
// `.secondary-toggle` in its top bar (#pst-header), which sphinx-book-theme does not use (theme-fixes.css
// hides that bar); the book theme renders the visible ones in the article header. Both themes wire only
// the first of each class in the page (document.querySelector): the hidden one. Upstream:
// pydata/pydata-sphinx-theme#2451. Here a click on any other toggle is passed to the wired one, which
// collapses the sidebar on a wide screen (sphinx-book-theme) and opens it as a dialog on a narrow one.
// tests/test_site.py checks both at desktop and phone widths.
(function () {
  "use strict";

  function forward(selector) {
    const toggles = document.querySelectorAll(selector);
    const wired = toggles[0];
    for (const toggle of Array.prototype.slice.call(toggles, 1)) {
      toggle.addEventListener(
        "click",
        (event) => {
          event.preventDefault();
          event.stopImmediatePropagation();
          wired.click();
        },
        true,
      );
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    forward(".primary-toggle");
    forward(".secondary-toggle");
  });
})();
