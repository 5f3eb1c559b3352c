// TCP endpoints, run by nginx's stream js module (njs): the proxy binds the whole TCP port range
// once, and each connection's target is looked up by the local port it arrived on, in the "tcp"
// section of routes.json (its last line). A TCP endpoint starting or stopping is then data, like
// an HTTP one, and never reloads nginx. The file is read per connection: njs keeps no state
// between sessions, and TCP connections (SSH, databases) are few and long-lived.

var fs = require('fs');

// The "tcp" section of the routing table's text.
function tcpSection(text) {
    var at = text.lastIndexOf('\n"tcp":');
    var doc = JSON.parse(at < 0 ? text : '{' + text.slice(at + 1));
    return (doc && typeof doc.tcp === 'object' && doc.tcp) || {};
}

// "<ip>:<port>" (IPv6 in brackets) of the entry listening on `port`, or null. The router wrote
// IP literals; anything else is refused here too, so no text but an address reaches proxy_pass.
function target(entries, port) {
    for (var id in entries) {
        var e = entries[id];
        if (e && e.listen === port && typeof e.host === 'string' && /^[0-9a-fA-F.:]{2,45}$/.test(e.host)
            && Number.isInteger(e.port) && e.port > 0 && e.port < 65536) {
            return (e.host.indexOf(':') >= 0 ? '[' + e.host + ']' : e.host) + ':' + e.port;
        }
    }
    return null;
}

// js_access: a port with no endpoint (any more) closes the connection.
function access(s) {
    var found = null;
    try {
        var text = fs.readFileSync(s.variables.clearml_routes_file, 'utf8');
        found = target(tcpSection(text), Number(s.variables.server_port));
    } catch (e) {
        s.error('clearml router: cannot read the TCP routes: ' + e);
    }
    if (!found) {
        s.deny();
        return;
    }
    s.variables.clearml_tcp_target = found;
    s.allow();
}

export default { access: access, target: target, tcpSection: tcpSection };
