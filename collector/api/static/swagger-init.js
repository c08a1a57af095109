// Starts Swagger UI on /api/docs. A file, not an inline <script>: the page's CSP allows scripts from
// the collector itself only (collector/api/headers.py DOCS_CSP).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",  // relative to /api/docs: /api/openapi.json, also behind a path prefix
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
