/**
 * Submit two prompts, wait until the batch is settled, print its money and its failures.
 *   REELBATCH_API_KEY=demo-key npm run example   (compiles to dist/, runs on Node 20)
 */
import { reelbatchClient, type BatchItem } from "../src/client.ts";

const client = reelbatchClient({
  apiKey: process.env.REELBATCH_API_KEY ?? "demo-key",
  baseUrl: process.env.REELBATCH_BASE_URL,
});
const items: BatchItem[] = [
  { prompt: "A cat playing piano", model: "sora-2", custom_id: "cat" },
  { prompt: "A dog in space #fail", model: "sora-2", custom_id: "dog" },
];
const created = await client.POST("/api/enterprise/video-batch", { body: { items } });
if (!created.data) throw new Error(`refused: ${JSON.stringify(created.error)}`);
const batchId = created.data.batch_id;
console.log(`batch ${batchId}: ${created.data.required_credits} credits frozen`);

for (;;) {
  const { data: batch } = await client.GET("/api/enterprise/video-batch/{batch_id}", {
    params: { path: { batch_id: batchId } },
  });
  if (batch && batch.settlement_status !== "pending") {
    console.log(`${batch.status}: spent ${batch.credits_spent}, refunded ${batch.refunded_credits}`);
    break;
  }
  await new Promise((resolve) => setTimeout(resolve, 500));
}
const { data: failed } = await client.GET("/api/enterprise/video-batch/{batch_id}/tasks", {
  params: { path: { batch_id: batchId }, query: { status: "failed" } },
});
for (const task of failed?.items ?? []) console.log(`failed ${task.custom_id}: ${task.failure_type}`);
