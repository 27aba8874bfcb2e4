"""Call control: engine, config, flows, queues, CLI."""
