"""Plugins written before the shared snapshot: they talk to the engine through the SDK."""
import ovirtsdk4

from proxy import engine


class via_bound_connection:
    def do_filter(self, hosts, vm, args):
        """Keeps the hosts the engine lists as up, asking it through the SDK's services."""
        with engine.connect() as conn:
            up = {h.id for h in conn.system_service().hosts_service().list(search="status=up")}
        return [h for h in hosts if h in up]


class via_own_connection:
    def do_filter(self, hosts, vm, args):
        """Keeps the hosts the engine knows, with a connection the plugin makes itself."""
        conn = ovirtsdk4.Connection(url=args["url"], username=args["user"], password=args["password"])
        try:
            known = {h.id for h in conn.system_service().hosts_service().list()}
        finally:
            conn.close()
        return [h for h in hosts if h in known]
