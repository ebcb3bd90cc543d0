"""The lab's Kubernetes: built from Go modules, run on 127.0.0.1 only.

- :mod:`.gobuild`: pinned versions; etcd, the control plane, kwok, kubectl and the kubelet
  built once from Go modules and cached;
- :mod:`.pki`: the cluster's own CA, serving, client and node certificates, kubeconfigs;
- :mod:`.control_plane`: tier 1, a real control plane with a kwok node (``python -m lab up --kubernetes``);
- :mod:`.containerd`: a private containerd with bridge CNI, and the images it runs;
- :mod:`.kubelet`: tier 2, a real kubelet node (``python -m lab up --kubelet``);
- :mod:`.pods`: SPIRE attesting that node's pods, and the suite's ``kubernetes`` runtime on it;
- :mod:`.procs`, :mod:`.files`: starting/polling processes, writing files.

``python -m lab.k8s build|smoke|down`` builds the kubelet, or smoke-runs one pod on a node.
"""
