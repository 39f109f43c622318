"""MCP acceptance with the official Python SDK (`mcp`, pinned in requirements.txt).

Run by `tests/api/mcp/acceptance.rs`, which boots a server, arranges the fixtures over GraphQL
and passes them as JSON in MCP_FIXTURES. Every check runs over four connections: Streamable
HTTP and the `memspace mcp` stdio forwarder, each with the current protocol (2026-07-28,
negotiated by discovery) and with the 2025-11-25 initialize handshake.

Exit status 0 when every check passed; each failure is printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
import uuid
from contextlib import asynccontextmanager

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

F = json.loads(os.environ["MCP_FIXTURES"])
FAILURES: list[str] = []
TOOLS = {
    "add_memories", "create_space", "delete_memory", "get_memory", "get_space",
    "list_spaces", "recent_memories", "search_memories", "update_memory",
}
READ_ONLY = {"search_memories", "get_memory", "list_spaces", "get_space", "recent_memories"}
DESTRUCTIVE = {"update_memory", "delete_memory"}


def check(cond: bool, what: str) -> None:
    if cond:
        print(f"  ok  {what}")
    else:
        print(f"  FAIL {what}")
        FAILURES.append(what)


def gql(query: str, variables: dict) -> dict:
    r = httpx2.post(
        F["graphql"],
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {F['admin_key']}"},
    )
    body = r.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL failed: {body}")
    return body["data"]


@asynccontextmanager
async def connect(transport: str, mode: str, key: str, message_handler=None):
    if transport == "http":
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        server = streamable_http_client(F["mcp"], http_client=http)
    else:
        server = StdioServerParameters(
            command=F["memspace_bin"],
            args=["mcp"],
            env={"MEMSPACE_URL": F["base"], "MEMSPACE_KEY": key, "MEMSPACE_LOG": "warn"},
        )
    kwargs = {"mode": mode, "read_timeout_seconds": 20}
    if message_handler is not None:
        kwargs["message_handler"] = message_handler
    async with Client(server, **kwargs) as client:
        yield client


def error_of(result) -> dict:
    return (result.structured_content or {}).get("error", {})


async def run_tools(client: Client, tag: str) -> None:
    listed = await client.list_tools()
    by_name = {t.name: t for t in listed.tools}
    check(set(by_name) == TOOLS, f"{tag}: tools/list has the nine tools")
    for name, tool in by_name.items():
        schema = tool.input_schema
        ann = tool.annotations
        check(schema.get("type") == "object" and "properties" in schema, f"{tag}: {name} has an input schema")
        check(
            ann is not None
            and ann.read_only_hint == (name in READ_ONLY)
            and ann.destructive_hint == (name in DESTRUCTIVE),
            f"{tag}: {name} annotations",
        )

    name = f"py-{tag}-{uuid.uuid4().hex[:8]}"
    created = await client.call_tool("create_space", {"name": name, "tags": ["py"]})
    check(not created.is_error and created.structured_content["space"]["name"] == name, f"{tag}: create_space")
    own = created.structured_content["space"]["id"]
    got = await client.call_tool("get_space", {"space_id": own})
    check(not got.is_error and got.structured_content["space"]["your_permission"] == "OWNER", f"{tag}: get_space")
    listed = await client.call_tool("list_spaces", {"name": "py-*"})
    ids = [s["id"] for s in listed.structured_content["spaces"]]
    check(not listed.is_error and own in ids, f"{tag}: list_spaces with a name glob")

    added = await client.call_tool(
        "add_memories",
        {"space_id": own, "memories": [
            {"content": f"Pelicans nest on the {tag} island", "tags": ["birds"], "importance": 7},
            {"content": "Herons fish at dawn", "tags": ["birds"], "metadata": {"seen": 3}},
        ]},
    )
    check(not added.is_error and len(added.structured_content["memories"]) == 2, f"{tag}: add_memories (two)")
    check(bool(added.content) and added.content[0].type == "text", f"{tag}: results carry a text rendering")
    first = added.structured_content["memories"][0]["id"]

    found = await client.call_tool("search_memories", {"query": "pelicans island", "space_ids": [own], "mode": "keyword"})
    hits = found.structured_content["hits"] if not found.is_error else []
    check(len(hits) == 1 and hits[0]["memory"]["id"] == first, f"{tag}: search_memories")
    one = await client.call_tool("get_memory", {"memory_id": first})
    version = one.structured_content["memory"]["version"]
    check(not one.is_error, f"{tag}: get_memory")
    upd = await client.call_tool("update_memory", {"memory_id": first, "expected_version": version, "tags": ["birds", "coast"]})
    check(not upd.is_error and upd.structured_content["memory"]["tags"] == ["birds", "coast"], f"{tag}: update_memory")
    stale = await client.call_tool("update_memory", {"memory_id": first, "expected_version": version, "content": "x"})
    check(stale.is_error and error_of(stale).get("code") == "CONFLICT", f"{tag}: a stale version is CONFLICT")
    recent = await client.call_tool("recent_memories", {"space_id": own, "limit": 5})
    check(not recent.is_error and len(recent.structured_content["memories"]) == 2, f"{tag}: recent_memories")
    gone = await client.call_tool("delete_memory", {"memory_id": first})
    check(not gone.is_error, f"{tag}: delete_memory")
    again = await client.call_tool("get_memory", {"memory_id": first})
    check(again.is_error and error_of(again).get("code") == "NOT_FOUND", f"{tag}: a deleted memory is NOT_FOUND")

    # Errors with the GraphQL codes.
    forbidden = await client.call_tool("add_memories", {"space_id": F["read_only_space"], "memories": [{"content": "x"}]})
    check(forbidden.is_error and error_of(forbidden).get("code") == "FORBIDDEN", f"{tag}: writing a VIEW space is FORBIDDEN")
    hidden = await client.call_tool("get_space", {"space_id": F["hidden_space"]})
    check(hidden.is_error and error_of(hidden).get("code") == "NOT_FOUND", f"{tag}: a hidden space is NOT_FOUND")
    bad = await client.call_tool("add_memories", {"space_id": own, "memories": [{"content": "ok", "importance": "high"}]})
    check(
        bad.is_error and error_of(bad).get("code") == "VALIDATION_ERROR" and error_of(bad).get("field") == "memories[0].importance",
        f"{tag}: a bad argument is VALIDATION_ERROR naming the field",
    )
    dup = await client.call_tool("add_memories", {"space_id": F["agent_space"], "memories": [{"content": F["existing_content"]}]})
    check(
        dup.is_error and error_of(dup).get("code") == "DUPLICATE" and error_of(dup).get("existingId") == F["existing_memory"],
        f"{tag}: a duplicate is DUPLICATE with the existing id",
    )

    # Resources and the prompt.
    resources = await client.list_resources()
    uris = {r.uri for r in resources.resources}
    check(F["agent_space_uri"] in uris and not any(F["hidden_space"] in u for u in uris), f"{tag}: resources/list is per caller")
    read = await client.read_resource(F["agent_space_uri"])
    body = json.loads(read.contents[0].text)
    check(body["space"]["id"] == F["agent_space"] and len(body["recent_memories"]) >= 1, f"{tag}: resources/read")
    prompt = await client.get_prompt("recall", {"query": F["existing_content"]})
    check(F["existing_content"] in prompt.messages[0].content.text, f"{tag}: the recall prompt frames the hits")


async def graphql_write_later(content: str) -> None:
    await anyio.sleep(0.5)
    await anyio.to_thread.run_sync(
        lambda: gql(
            "mutation($i:CreateMemoryInput!){ createMemory(input:$i){ id } }",
            {"i": {"spaceId": F["agent_space"], "content": content}},
        )
    )


async def run_notification(transport: str, mode: str, tag: str) -> None:
    uri = F["agent_space_uri"]
    content = f"written over GraphQL for {tag} {uuid.uuid4().hex[:6]}"
    if mode == "legacy":
        got = anyio.Event()

        async def handler(message) -> None:
            if isinstance(message, types.ResourceUpdatedNotification) and message.params.uri == uri:
                got.set()

        async with connect(transport, mode, F["agent_key"], message_handler=handler) as client:
            await client.subscribe_resource(uri)
            async with anyio.create_task_group() as tg:
                tg.start_soon(graphql_write_later, content)
                with anyio.move_on_after(15):
                    await got.wait()
            check(got.is_set(), f"{tag}: resources/subscribe, then a GraphQL write notifies")
    else:
        async with connect(transport, mode, F["agent_key"]) as client:
            notified = False
            async with client.listen(resource_subscriptions=[uri]) as sub:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(graphql_write_later, content)
                    with anyio.move_on_after(15):
                        async for event in sub:
                            if getattr(event, "uri", None) == uri:
                                notified = True
                                break
            check(notified, f"{tag}: subscriptions/listen, then a GraphQL write notifies")


async def run_revocation(transport: str, mode: str, tag: str) -> None:
    user = gql(
        "mutation($n:String!,$e:String!){ createUser(input:{name:$n,email:$e,isAdmin:false}){ id } }",
        {"n": "revokee", "e": f"revokee-{uuid.uuid4().hex}@example.com"},
    )["createUser"]["id"]
    k = gql(
        "mutation($u:ID!){ createApiKey(input:{userId:$u,name:\"py\"}){ key apiKey{ id } } }",
        {"u": user},
    )["createApiKey"]
    code = None
    try:
        async with connect(transport, mode, k["key"]) as client:
            first = await client.call_tool("list_spaces", {})
            check(not first.is_error, f"{tag}: the key works before it is revoked")
            gql("mutation($id:ID!){ revokeApiKey(id:$id) }", {"id": k["apiKey"]["id"]})
            try:
                with anyio.fail_after(20):
                    after = await client.call_tool("list_spaces", {})
                code = f"not refused: {after}"
            except MCPError as e:  # the HTTP 401, as a JSON-RPC error carrying the code
                code = (e.error.data or {}).get("code") if isinstance(e.error.data, dict) else repr(e)
            except Exception as e:
                code = f"{type(e).__name__}: {e}"
    except Exception as e:  # leaving a refused session may raise too; the code is already known
        print(f"      (closing the revoked session: {type(e).__name__})")
    check(code == "UNAUTHENTICATED", f"{tag}: a key revoked mid-session is refused with UNAUTHENTICATED ({code})")


async def run(transport: str, mode: str) -> None:
    tag = f"{transport}/{mode}"
    print(f"== {tag}")
    try:
        async with connect(transport, mode, F["agent_key"]) as client:
            expected = "2026-07-28" if mode == "auto" else "2025-11-25"
            check(client.protocol_version == expected, f"{tag}: negotiated {client.protocol_version}")
            await run_tools(client, tag)
        await run_notification(transport, mode, tag)
        await run_revocation(transport, mode, tag)
    except Exception:
        traceback.print_exc()
        FAILURES.append(f"{tag}: raised")


async def main() -> None:
    # Unauthenticated: 401 with a Bearer challenge, answered before MCP.
    r = httpx2.post(F["mcp"], json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    check(r.status_code == 401 and r.headers.get("www-authenticate") == "Bearer", "no key: 401 with WWW-Authenticate: Bearer")
    for transport in ["http", "stdio"]:
        for mode in ["auto", "legacy"]:
            await run(transport, mode)
    if FAILURES:
        print(f"\n{len(FAILURES)} checks failed:")
        for f in FAILURES:
            print(f"  - {f}")
        sys.exit(1)
    print("\nall MCP acceptance checks passed")


asyncio.run(main())
