"""etcd's wire messages, generated from proto/ by tools/gen_proto.py; do not edit."""
