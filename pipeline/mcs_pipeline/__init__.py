"""The MCS pipeline's Ray driver: one Ray task per scene, results and a run summary in a store."""
