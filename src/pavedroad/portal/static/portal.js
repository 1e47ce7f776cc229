// Pavedroad portal: small enhancements only. Every page works without this file.
(function () {
  "use strict";

  // "/" jumps to the search box, as on most developer tools.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    var box = document.getElementById("catalog-q") || document.getElementById("global-q");
    if (box) { event.preventDefault(); box.focus(); box.select(); }
  });

  // Tabs: switch panels without jumping down the page; the URL keeps the tab.
  function setupTabs(container) {
    var tabs = Array.prototype.slice.call(container.querySelectorAll(".tab-list .tab"));
    var panels = Array.prototype.slice.call(container.querySelectorAll(":scope > .tab-panel"));
    if (!tabs.length || !panels.length) return;

    function panelFor(hash) {
      if (!hash || hash.length < 2) return null;
      var element = document.getElementById(decodeURIComponent(hash.slice(1)));
      if (!element) return null;
      return panels.filter(function (panel) { return panel === element || panel.contains(element); })[0] || null;
    }

    function show(panel, element) {
      panels.forEach(function (p) { p.classList.toggle("is-active", p === panel); });
      tabs.forEach(function (tab) {
        var active = tab.getAttribute("href") === "#" + panel.id;
        tab.classList.toggle("is-active", active);
        if (active) tab.setAttribute("aria-current", "page"); else tab.removeAttribute("aria-current");
      });
      if (element && element !== panel) element.scrollIntoView();
    }

    container.classList.add("js-tabs");
    var initial = panelFor(location.hash);
    show(initial || panels[0], initial ? document.getElementById(location.hash.slice(1)) : null);

    tabs.forEach(function (tab) {
      tab.addEventListener("click", function (event) {
        var panel = panelFor(tab.getAttribute("href"));
        if (!panel) return;
        event.preventDefault();
        history.replaceState(null, "", tab.getAttribute("href"));
        show(panel, null);
      });
    });

    // In-page links to a tab (e.g. "See the errors") switch tabs too.
    window.addEventListener("hashchange", function () {
      var panel = panelFor(location.hash);
      if (panel) show(panel, document.getElementById(location.hash.slice(1)));
    });
  }

  document.querySelectorAll("[data-tabs]").forEach(setupTabs);

  // Copy buttons: data-copy names the element whose text to copy (a new token's
  // secret). Without the clipboard (or this file) the text is there to select.
  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function setupCopy(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var label = button.textContent;
    function done(text) {
      button.textContent = text;
      setTimeout(function () { button.textContent = label; }, 2000);
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      var text = source.textContent.trim();
      if (!navigator.clipboard || !navigator.clipboard.writeText) {
        selectText(source);
        done("Press Ctrl+C");
        return;
      }
      navigator.clipboard.writeText(text).then(
        function () { done("Copied"); },
        function () { selectText(source); done("Press Ctrl+C"); }
      );
    });
  }

  document.querySelectorAll("[data-copy]").forEach(setupCopy);
})();
