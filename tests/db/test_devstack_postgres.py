"""The test harness's temporary Postgres leaves nothing behind (each test session used to leave
its folder in /tmp)."""

from wfclock_devstack.postgres import temporary_server


def test_a_discarded_temporary_server_is_stopped_and_its_folder_gone():
    server = temporary_server()
    server.start()
    assert (server.data / "postmaster.pid").exists()
    server.discard()
    assert not server.root.exists()
