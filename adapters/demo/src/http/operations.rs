//! The mock API's operations, in one table that both the REST routes ([`crate::http::api`]) and the
//! MCP tools ([`crate::http::mcp`]) read: each operation's REST route, MCP tool name, the scope it
//! needs, its input, and the canned answer both give.

use serde_json::{json, Map, Value};
use sitequest_auth::Scopes;

/// What an operation takes besides the key: nothing, a server id or a domain name. On REST it is
/// the path's `{id}` or `{domain}`; as a tool, the `server_id` or `domain` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// No input.
    None,
    /// `server_id` (REST: `{id}`).
    ServerId,
    /// `domain` (REST: `{domain}`).
    Domain,
    /// `server_id` and the `command` to run.
    ServerCommand,
}

/// One operation of the mock API.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// The MCP tool's name.
    pub tool: &'static str,
    /// The REST method.
    pub method: &'static str,
    /// The REST path, in axum's syntax.
    pub path: &'static str,
    /// The scope it needs (the spec's table).
    pub scope: Scopes,
    /// What it does, for people and agents.
    pub description: &'static str,
    /// What it takes.
    pub input: Input,
    /// The canned answer's HTTP status on REST.
    pub status: u16,
}

/// Every operation: the spec's scope for each route, in one place.
pub const OPERATIONS: [Operation; 19] = [
    op(
        "list_servers",
        "GET",
        "/v1/servers",
        Scopes::VPS_READ,
        Input::None,
        200,
        "List your VPS servers.",
    ),
    op(
        "get_server",
        "GET",
        "/v1/servers/{id}",
        Scopes::VPS_READ,
        Input::ServerId,
        200,
        "Get one VPS server.",
    ),
    op(
        "get_server_metrics",
        "GET",
        "/v1/servers/{id}/metrics",
        Scopes::VPS_READ,
        Input::ServerId,
        200,
        "Get a server's CPU, memory and disk use.",
    ),
    op(
        "start_server",
        "POST",
        "/v1/servers/{id}/actions/start",
        Scopes::VPS_WRITE,
        Input::ServerId,
        202,
        "Start a server.",
    ),
    op(
        "stop_server",
        "POST",
        "/v1/servers/{id}/actions/stop",
        Scopes::VPS_WRITE,
        Input::ServerId,
        202,
        "Stop a server.",
    ),
    op(
        "reboot_server",
        "POST",
        "/v1/servers/{id}/actions/reboot",
        Scopes::VPS_WRITE,
        Input::ServerId,
        202,
        "Reboot a server.",
    ),
    op(
        "reinstall_server",
        "POST",
        "/v1/servers/{id}/actions/reinstall",
        Scopes::VPS_WRITE,
        Input::ServerId,
        202,
        "Reinstall a server's operating system.",
    ),
    op(
        "mount_iso",
        "POST",
        "/v1/servers/{id}/actions/mount-iso",
        Scopes::VPS_WRITE,
        Input::ServerId,
        202,
        "Mount an ISO image on a server.",
    ),
    op(
        "ssh_exec",
        "POST",
        "/v1/servers/{id}/ssh",
        Scopes::VPS_WRITE,
        Input::ServerCommand,
        200,
        "Run a command on a server over SSH.",
    ),
    op(
        "create_server",
        "POST",
        "/v1/servers",
        Scopes::VPS_MANAGE,
        Input::None,
        201,
        "Create a VPS server.",
    ),
    op(
        "upgrade_server",
        "POST",
        "/v1/servers/{id}/upgrade",
        Scopes::VPS_MANAGE,
        Input::ServerId,
        202,
        "Upgrade a server's plan.",
    ),
    op(
        "delete_server",
        "DELETE",
        "/v1/servers/{id}",
        Scopes::VPS_MANAGE,
        Input::ServerId,
        202,
        "Delete a server.",
    ),
    op(
        "list_domains",
        "GET",
        "/v1/domains",
        Scopes::DOMAINS_READ,
        Input::None,
        200,
        "List your domains.",
    ),
    op(
        "get_dns",
        "GET",
        "/v1/domains/{domain}/dns",
        Scopes::DOMAINS_READ,
        Input::Domain,
        200,
        "Get a domain's DNS records.",
    ),
    op(
        "update_dns",
        "PUT",
        "/v1/domains/{domain}/dns",
        Scopes::DOMAINS_WRITE,
        Input::Domain,
        200,
        "Replace a domain's DNS records.",
    ),
    op(
        "update_domain_settings",
        "PATCH",
        "/v1/domains/{domain}/settings",
        Scopes::DOMAINS_WRITE,
        Input::Domain,
        200,
        "Change a domain's settings.",
    ),
    op(
        "register_domain",
        "POST",
        "/v1/domains",
        Scopes::DOMAINS_MANAGE,
        Input::None,
        201,
        "Register a domain.",
    ),
    op(
        "transfer_domain",
        "POST",
        "/v1/domains/{domain}/transfer",
        Scopes::DOMAINS_MANAGE,
        Input::Domain,
        202,
        "Transfer a domain in.",
    ),
    op(
        "delete_domain",
        "DELETE",
        "/v1/domains/{domain}",
        Scopes::DOMAINS_MANAGE,
        Input::Domain,
        202,
        "Delete a domain.",
    ),
];

#[allow(clippy::too_many_arguments)]
const fn op(
    tool: &'static str,
    method: &'static str,
    path: &'static str,
    scope: Scopes,
    input: Input,
    status: u16,
    description: &'static str,
) -> Operation {
    Operation {
        tool,
        method,
        path,
        scope,
        description,
        input,
        status,
    }
}

/// The operation whose tool is named `tool`.
#[must_use]
pub fn by_tool(tool: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.tool == tool)
}

/// Longest server id or domain name an operation takes.
pub const MAX_ARGUMENT_LEN: usize = 253;

fn server(id: &str) -> Value {
    let (name, status) = match id {
        "srv-1001" => ("web-1", "running"),
        "srv-1002" => ("db-1", "stopped"),
        _ => ("server", "running"),
    };
    json!({"id": id, "name": name, "status": status, "plan": "vps-2", "region": "eu-central"})
}

fn domain(name: &str) -> Value {
    json!({"domain": name, "status": "active", "auto_renew": true})
}

impl Operation {
    /// The canned answer for `arg` (the server id or domain name; empty for none): the one source
    /// of the data both REST and MCP return.
    #[must_use]
    pub fn answer(&self, arg: &str) -> Value {
        let action = |a: &str| json!({"id": arg, "action": a, "status": "accepted"});
        match self.tool {
            "list_servers" => json!({"servers": [server("srv-1001"), server("srv-1002")]}),
            "get_server" => server(arg),
            "get_server_metrics" => {
                json!({"id": arg, "cpu_percent": 12.5, "memory_percent": 41.0, "disk_percent": 63.2})
            }
            "start_server" => action("start"),
            "stop_server" => action("stop"),
            "reboot_server" => action("reboot"),
            "reinstall_server" => action("reinstall"),
            "mount_iso" => action("mount-iso"),
            "ssh_exec" => json!({"id": arg, "exit_code": 0, "stdout": "ok\n", "stderr": ""}),
            "create_server" => server("srv-1003"),
            "upgrade_server" => json!({"id": arg, "status": "upgrading"}),
            "delete_server" | "delete_domain" => {
                let field = if self.tool == "delete_server" {
                    "id"
                } else {
                    "domain"
                };
                json!({ field: arg, "status": "deleting" })
            }
            "list_domains" => json!({"domains": [domain("example.com"), domain("example.org")]}),
            "get_dns" => json!({"domain": arg, "records": [
                {"type": "A", "name": "@", "value": "203.0.113.10", "ttl": 3600},
                {"type": "MX", "name": "@", "value": "mail.example.com", "ttl": 3600, "priority": 10}
            ]}),
            "update_dns" | "update_domain_settings" => json!({"domain": arg, "status": "updated"}),
            "register_domain" => domain("example.net"),
            "transfer_domain" => json!({"domain": arg, "status": "transfer_pending"}),
            _ => Value::Null,
        }
    }

    /// The tool's input as a JSON Schema object.
    #[must_use]
    pub fn input_schema(&self) -> Map<String, Value> {
        let string = |description: &str| json!({"type": "string", "minLength": 1, "maxLength": MAX_ARGUMENT_LEN, "description": description});
        let (properties, required) = match self.input {
            Input::None => (json!({}), json!([])),
            Input::ServerId => (
                json!({"server_id": string("The server's id, as srv-1001.")}),
                json!(["server_id"]),
            ),
            Input::Domain => (
                json!({"domain": string("The domain name, as example.com.")}),
                json!(["domain"]),
            ),
            Input::ServerCommand => (
                json!({
                    "server_id": string("The server's id, as srv-1001."),
                    "command": {"type": "string", "minLength": 1, "maxLength": 4096, "description": "The command to run."}
                }),
                json!(["server_id", "command"]),
            ),
        };
        let schema = json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        });
        match schema {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The argument of a tool call: the server id or domain name, checked against the schema;
    /// the error is the message for the caller.
    ///
    /// # Errors
    ///
    /// A missing, empty, overlong or non-string argument, or an argument the tool does not take.
    pub fn argument<'a>(&self, args: Option<&'a Map<String, Value>>) -> Result<&'a str, String> {
        let allowed: &[&str] = match self.input {
            Input::None => &[],
            Input::ServerId => &["server_id"],
            Input::Domain => &["domain"],
            Input::ServerCommand => &["server_id", "command"],
        };
        if let Some(extra) = args
            .into_iter()
            .flat_map(Map::keys)
            .find(|k| !allowed.contains(&k.as_str()))
        {
            let shown: String = extra.chars().take(64).collect();
            return Err(format!("{} takes no argument {shown:?}", self.tool));
        }
        let text = |name: &str, max: usize| -> Result<&'a str, String> {
            match args.and_then(|a| a.get(name)) {
                // Counted in characters, as JSON Schema's maxLength counts.
                Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max => {
                    Ok(s.as_str())
                }
                Some(Value::String(_)) => Err(format!("{name} must be 1 to {max} characters")),
                Some(_) => Err(format!("{name} must be a string")),
                None => Err(format!("{} needs {name}", self.tool)),
            }
        };
        match self.input {
            Input::None => Ok(""),
            Input::ServerId => text("server_id", MAX_ARGUMENT_LEN),
            Input::Domain => text("domain", MAX_ARGUMENT_LEN),
            Input::ServerCommand => {
                text("command", 4096)?;
                text("server_id", MAX_ARGUMENT_LEN)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_the_specs() {
        let read_only = Scopes::VPS_READ | Scopes::DOMAINS_READ;
        let visible: Vec<&str> = OPERATIONS
            .iter()
            .filter(|o| read_only.contains(o.scope))
            .map(|o| o.tool)
            .collect();
        assert_eq!(
            visible,
            [
                "list_servers",
                "get_server",
                "get_server_metrics",
                "list_domains",
                "get_dns"
            ]
        );
        for o in &OPERATIONS {
            assert_eq!(o.scope.iter().count(), 1, "{}", o.tool);
            assert!(!o.answer("x").is_null(), "{}", o.tool);
            assert_eq!(by_tool(o.tool).map(|b| b.path), Some(o.path));
        }
    }

    #[test]
    fn arguments_are_checked() {
        let get = by_tool("get_server").unwrap();
        let args = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(
            get.argument(Some(&args(json!({"server_id": "srv-1"})))),
            Ok("srv-1")
        );
        assert_eq!(get.argument(None), Err("get_server needs server_id".into()));
        assert_eq!(
            get.argument(Some(&args(json!({"server_id": 7})))),
            Err("server_id must be a string".into())
        );
        assert_eq!(
            get.argument(Some(&args(json!({"server_id": "a", "x": 1})))),
            Err("get_server takes no argument \"x\"".into())
        );
        let long = "a".repeat(300);
        assert!(get
            .argument(Some(&args(json!({"server_id": long}))))
            .is_err());
        let list = by_tool("list_servers").unwrap();
        assert_eq!(list.argument(None), Ok(""));
    }
}
