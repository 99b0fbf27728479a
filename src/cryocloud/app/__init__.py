"""What every face (CLI, REST server, watcher) calls: submit, status, cancel, costs. Returns data, prints nothing."""
