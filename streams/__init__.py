"""The Faust app, event records, topics and the persistence agent."""
