// Voxel geometry. Positions are in the grid frame (mm): voxel (ix, iy, iz) spans
// [ix*sx, (ix+1)*sx) x [iy*sy, (iy+1)*sy) x [iz*sz, (iz+1)*sz). Outside the grid is vacuum.
// The push past a voxel face after a boundary-limited step is SettingsT::boundary_push.
#pragma once
#include "params.hpp"
#include "types.hpp"

namespace rpt {

struct VoxelPos {
  int32_t ix, iy, iz;
  int64_t index;  // -1 outside the grid
};

template <class Real>
RPT_INLINE VoxelPos locate(const GridViewT<Real>& g, const Vec3T<Real>& r) {
  VoxelPos p;
  const Real fx = r.x / g.sx, fy = r.y / g.sy, fz = r.z / g.sz;
  // inside iff 0 <= f < n on every axis (NaN is outside); there truncation is the floor
  if (fx >= Real(0) && fy >= Real(0) && fz >= Real(0) && fx < Real(g.nx) && fy < Real(g.ny) &&
      fz < Real(g.nz)) {
    p.ix = int32_t(fx);
    p.iy = int32_t(fy);
    p.iz = int32_t(fz);
    p.index = (int64_t(p.iz) * g.ny + p.iy) * g.nx + p.ix;
  } else {
    p.ix = p.iy = p.iz = -1;
    p.index = -1;
  }
  return p;
}

// Distance along d from r to the faces of voxel p (p inside the grid).
template <class Real>
RPT_INLINE Real distance_to_boundary(const GridViewT<Real>& g, const VoxelPos& p,
                                     const Vec3T<Real>& r, const Vec3T<Real>& d) {
  Real t = far_distance<Real>();
  if (d.x > 0) t = dmin(t, ((p.ix + 1) * g.sx - r.x) / d.x);
  else if (d.x < 0) t = dmin(t, (p.ix * g.sx - r.x) / d.x);
  if (d.y > 0) t = dmin(t, ((p.iy + 1) * g.sy - r.y) / d.y);
  else if (d.y < 0) t = dmin(t, (p.iy * g.sy - r.y) / d.y);
  if (d.z > 0) t = dmin(t, ((p.iz + 1) * g.sz - r.z) / d.z);
  else if (d.z < 0) t = dmin(t, (p.iz * g.sz - r.z) / d.z);
  return dmax(t, Real(0));
}

// Shortest distance from r to any face of voxel p (isotropic safety distance).
template <class Real>
RPT_INLINE Real safety_distance(const GridViewT<Real>& g, const VoxelPos& p, const Vec3T<Real>& r) {
  Real s = dmin(r.x - p.ix * g.sx, (p.ix + 1) * g.sx - r.x);
  s = dmin(s, dmin(r.y - p.iy * g.sy, (p.iy + 1) * g.sy - r.y));
  s = dmin(s, dmin(r.z - p.iz * g.sz, (p.iz + 1) * g.sz - r.z));
  return dmax(s, Real(0));
}

template <class Real>
RPT_INLINE Vec3T<Real> advance(const Vec3T<Real>& r, const Vec3T<Real>& d, Real s) {
  return Vec3T<Real>{r.x + s * d.x, r.y + s * d.y, r.z + s * d.z};
}

}  // namespace rpt
