/*! Parley widget loader: <script src="https://HOST/widget.js" data-project-id="ID" async></script>
 * This file keeps a stable URL (short cache); it loads the widget bundle from its
 * content-hashed URL (cached for a year), handing over the tag's data attributes. */
(function () {
  "use strict";
  var tag = document.currentScript;
  if (!tag || !tag.src) return;
  if (window.__parleyWidgetLoaded) return; // the tag was pasted twice
  window.__parleyWidgetLoaded = true;
  var base = new URL(tag.src, location.href).origin;
  var bundle = document.createElement("script");
  bundle.src = base + "__PARLEY_WIDGET_BUNDLE__";
  bundle.async = true;
  bundle.setAttribute("data-parley-base", base);
  for (var i = 0; i < tag.attributes.length; i++) {
    var attr = tag.attributes[i];
    if (attr.name.indexOf("data-") === 0) bundle.setAttribute(attr.name, attr.value);
  }
  (document.head || document.documentElement).appendChild(bundle);
})();
