"""The traffic split follows an edited config file in a running sidecar, without a restart."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import yaml

from proxy._gen.switchyard.v1 import admin_service_pb2 as admin_pb
from proxy._gen.switchyard.v1 import vector_service_pb2 as pb
from proxy.cli.client import Doc
from proxy.demo.sidecar_process import free_port
from tests.conftest import SidecarFactory
from tests.migration_support import migration_config


def test_split_follows_the_config_file_within_seconds(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    config = migration_config(tmp_path / "data", f"test-{uuid.uuid4().hex}")
    config["server"]["listen"] = f"127.0.0.1:{free_port()}"
    sidecar = start_sidecar(config)
    with sidecar.client() as client:
        client.upsert([Doc("d1", "garlic broth recipe")])
        client.admin.StartMigration(admin_pb.StartMigrationRequest())

        def share_on_new() -> float:
            paths = [client.query("garlic", k=1, routing_key=f"user-{n}").served_by for n in range(300)]
            return sum(p != pb.ROUTING_MODE_OLD for p in paths) / len(paths)

        assert share_on_new() == 0.0
        config["query"] = {"traffic_percent": 100}
        sidecar.config_path.write_text(yaml.safe_dump(config))
        deadline = time.monotonic() + 10
        while share_on_new() < 1.0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert share_on_new() == 1.0
    assert "traffic split set to 100%" in sidecar.log_path.read_text()
