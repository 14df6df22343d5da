// Renders openapi.yaml (as /docs/openapi.json, whose server is this origin) with Swagger UI.
"use strict";

if (typeof window.SwaggerUIBundle !== "function") {
  document.getElementById("docs-missing").hidden = false;
} else {
  window.SwaggerUIBundle({
    url: "/docs/openapi.json",
    dom_id: "#swagger",
    deepLinking: true,
    validatorUrl: null,        // no call to an outside validator
    persistAuthorization: false,
    defaultModelsExpandDepth: 0,
  });
}
