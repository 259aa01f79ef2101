"""High availability: two relais-agent processes with the same key (two
machines at home, or two on one) hold the same routes on one edge at once.
New streams go to the connection carrying fewer, and when one agent goes
away the other goes on serving, the stream port staying open.  Real
processes on 127.0.0.1.  Run:
RELAIS_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/e2e/test_ha.py
"""
import signal
import socket

from relais import (SLOW, Agent, Edge, TcpService, free_ports, http_answer, recv_all, tcp,
                    wait_for)

HOST = "app.home.test"


def named_tcp(name):
    """A TcpService handler saying its name, then echoing until EOF."""
    def handler(sock, info):
        sock.sendall(name + b"\n")
        while True:
            d = sock.recv(65536)
            if not d:
                break
            sock.sendall(d)
    return handler


def get(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % HOST.encode())
        data = recv_all(s)
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def sessions(edge):
    return [s for s in edge.status()["sessions"] if s["agent"] == "home"]


def test_two_agents_with_one_key_share_the_routes_and_survive_one_going(env, closing):
    web = {n: TcpService(http_answer(n)) for n in (b"one", b"two")}
    game = {n: TcpService(named_tcp(n)) for n in (b"one", b"two")}
    for svc in list(web.values()) + list(game.values()):
        closing(svc)
    port = free_ports(1)
    agents = {}
    for n, name in ((b"one", "home"), (b"two", "home-2")):
        agents[n] = Agent(env, name, keyfile=agents[b"one"].keyfile if agents else None,
                          routes=[{"host": HOST, "to": "http://127.0.0.1:%d" % web[n].port}],
                          streams=[tcp(port, game[n].port)])
    edge = Edge(env, agents=[agents[b"one"].entry(hosts=[HOST], ports=["tcp/%d" % port])])
    edge.cfg["listen"]["streams"] = ["127.0.0.1"]
    edge.write()
    edge.start()
    for a in agents.values():
        a.start(edge.url())
        a.proc.wait_log("route %s accepted by the edge" % HOST)
        a.proc.wait_log("route tcp/%d accepted by the edge" % port)
    assert len(sessions(edge)) == 2, edge.status()

    # a stream held open on one connection: the next goes to the other
    first = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    closing(first)
    who = first.recv(16).strip()
    second = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    closing(second)
    other = second.recv(16).strip()
    assert {who, other} == {b"one", b"two"}, (who, other)
    second.close()

    # the agent behind the open stream goes away: HTTP and the stream port
    # are served by the other one, the port never closed
    agents[who].proc.signal(signal.SIGKILL)
    agents[who].proc.p.wait(5)
    try:  # its own stream ends with it (reset: it was cut)
        assert recv_all(first) == b""
    except ConnectionResetError:
        pass
    wait_for(lambda: len(sessions(edge)) == 1, 5 * SLOW, what="the edge dropping that session")
    for _ in range(10):
        assert get(edge.http_port) == (200, other)
    s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    try:
        assert s.recv(16).strip() == other
        s.sendall(b"ping")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"ping"
    finally:
        s.close()
