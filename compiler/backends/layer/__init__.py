"""The layer-engine back end: schedule, memory, weight stream and hardware of a layer engine."""
