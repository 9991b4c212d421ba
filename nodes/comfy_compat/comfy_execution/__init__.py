"""`comfy_execution`: helpers of ComfyUI's executor that packs use; `graph_utils.GraphBuilder` builds the subgraph a
node expands into (reference §4.7). Imported only under that name."""
