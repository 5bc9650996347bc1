"""Video capabilities with no MCP in them: sources and download, frame sampling, the model backend, and the
logic of the two tools (`tools.video_qa.VideoQA`)."""
