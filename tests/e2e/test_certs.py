"""The edge's own names and certificates, as agents see them."""
from relais import Agent, Edge, wait_for


def route(host, to="http://127.0.0.1:9"):
    return {"host": host, "to": to}


def test_route_for_the_tunnel_hostname_is_refused(env):
    """tunnel.hostname is the edge's own name: an agent allowed a pattern
    that covers it may not take it (its HTTP traffic, its certificate); the
    agent's other routes are accepted."""
    a = Agent(env, "home", routes=[route("EDGE.example.test"), route("app.example.test")])
    e = Edge(env, agents=[a.entry(hosts=["*.example.test"])])
    e.cfg["tunnel"]["hostname"] = "edge.example.test"
    e.write()
    e.start()
    a.start("wss://localhost:%d/relais" % e.tunnel_port)
    a.proc.wait_log("route edge.example.test refused by the edge: "
                    "host 'edge.example.test' is the edge's tunnel hostname", 5)
    e.proc.wait_log("agent 'home': route edge.example.test refused: host 'edge.example.test' "
                    "is the edge's tunnel hostname", 5)
    wait_for(lambda: e.routes() == [("home", "http", "app.example.test")], 5,
             what="only app.example.test accepted")
