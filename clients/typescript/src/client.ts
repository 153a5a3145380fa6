/**
 * A typed client of the Reelbatch customer API: openapi-fetch over the types that openapi-typescript
 * generated from the API's OpenAPI document (src/schema.d.ts; regenerate with `npm run generate`).
 * Every path, parameter, body and answer is checked by the compiler against the document.
 */
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.d.ts";

export type { components, paths };
export type Batch = components["schemas"]["BatchView"];
export type BatchAccepted = components["schemas"]["BatchAccepted"];
export type BatchItem = components["schemas"]["BatchItemIn"];
export type ApiError = components["schemas"]["ErrorResponse"];

/** A client sending `X-API-Key` and, on creates, an `Idempotency-Key` you can resend safely. */
export function reelbatchClient(options: { apiKey: string; baseUrl?: string }) {
  const client = createClient<paths>({ baseUrl: options.baseUrl ?? "http://127.0.0.1:8000" });
  const auth: Middleware = {
    onRequest({ request }) {
      request.headers.set("X-API-Key", options.apiKey);
      if (request.method === "POST" && !request.headers.has("Idempotency-Key")) {
        request.headers.set("Idempotency-Key", crypto.randomUUID());
      }
      return request;
    },
  };
  client.use(auth);
  return client;
}
