// The TypeScript SDK client (@modelcontextprotocol/sdk, pinned in package.json) against a docserver URL.
// Speaks the session era over Streamable HTTP, as the SDK does, and prints one JSON object:
// what each step answered, for tests/test_foreign_clients.py to judge.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, query] = process.argv.slice(2);

async function outcome(step) {
  try {
    return { result: await step() };
  } catch (error) {
    return { error: { code: error.code ?? null, message: String(error.message) } };
  }
}

const client = new Client({ name: "docserver-foreign-test", version: "0" });
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
const report = {
  protocolVersion: transport.protocolVersion ?? null,
  sessionId: transport.sessionId ?? null,
  capabilities: client.getServerCapabilities(),
  tools: await outcome(() => client.listTools()),
  search: await outcome(() => client.callTool({ name: "search_docs", arguments: { query, limit: 3 } })),
  resources: await outcome(() => client.listResources()),
  unknownTool: await outcome(() => client.callTool({ name: "no_such_tool", arguments: {} })),
  badArguments: await outcome(() => client.callTool({ name: "search_docs", arguments: { query, limit: "many" } })),
  unknownResource: await outcome(() => client.readResource({ uri: "docs://nosuch/1" })),
};
const first = report.search.result?.structuredContent?.results?.[0];
if (first) {
  report.read = await outcome(() => client.readResource({ uri: `docs://${first.source}/${first.document_id}` }));
}
await transport.terminateSession();
await client.close();
process.stdout.write(JSON.stringify(report));
