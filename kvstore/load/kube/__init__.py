"""Kubernetes-shaped traffic for ``kvstore load``: kube-apiserver's keys, object sizes and
request shapes (k8s.io/apiserver storage/etcd3), as the kube-* scenarios send them.

layout    the keys and values: where each resource lives, and how big its objects are
wire      the Txn requests kube-apiserver sends, encoded by hand from reusable parts
routing   which endpoint a resource goes to, from kube-apiserver's --etcd-servers-overrides
streams   one kind of traffic each (lease renewals, pod churn, events, reads), with the state
          it carries from one request to the next (the revision an update is conditional on)
"""
