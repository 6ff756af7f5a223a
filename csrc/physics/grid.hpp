// Voxel geometry. Positions are in the grid frame (mm): voxel (ix, iy, iz) spans
// [ix*sx, (ix+1)*sx) x [iy*sy, (iy+1)*sy) x [iz*sz, (iz+1)*sz). Outside the grid is vacuum.
#pragma once
#include "params.hpp"
#include "types.hpp"

namespace rpt {

// Push past a voxel face after a boundary-limited step (mm). Small against any voxel, large
// against double rounding at the coordinates used (< 1e4 mm).
constexpr double kBoundaryPush = 1e-7;

struct VoxelPos {
  int32_t ix, iy, iz;
  int64_t index;  // -1 outside the grid
};

RPT_INLINE VoxelPos locate(const GridView& g, const Vec3& r) {
  VoxelPos p;
  const double fx = r.x / g.sx, fy = r.y / g.sy, fz = r.z / g.sz;
  // inside iff 0 <= f < n on every axis (NaN is outside); there truncation is the floor
  if (fx >= 0.0 && fy >= 0.0 && fz >= 0.0 && fx < double(g.nx) && fy < double(g.ny) &&
      fz < double(g.nz)) {
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
RPT_INLINE double distance_to_boundary(const GridView& g, const VoxelPos& p, const Vec3& r,
                                       const Vec3& d) {
  double t = 1e300;
  if (d.x > 0) t = dmin(t, ((p.ix + 1) * g.sx - r.x) / d.x);
  else if (d.x < 0) t = dmin(t, (p.ix * g.sx - r.x) / d.x);
  if (d.y > 0) t = dmin(t, ((p.iy + 1) * g.sy - r.y) / d.y);
  else if (d.y < 0) t = dmin(t, (p.iy * g.sy - r.y) / d.y);
  if (d.z > 0) t = dmin(t, ((p.iz + 1) * g.sz - r.z) / d.z);
  else if (d.z < 0) t = dmin(t, (p.iz * g.sz - r.z) / d.z);
  return dmax(t, 0.0);
}

// Shortest distance from r to any face of voxel p (isotropic safety distance).
RPT_INLINE double safety_distance(const GridView& g, const VoxelPos& p, const Vec3& r) {
  double s = dmin(r.x - p.ix * g.sx, (p.ix + 1) * g.sx - r.x);
  s = dmin(s, dmin(r.y - p.iy * g.sy, (p.iy + 1) * g.sy - r.y));
  s = dmin(s, dmin(r.z - p.iz * g.sz, (p.iz + 1) * g.sz - r.z));
  return dmax(s, 0.0);
}

RPT_INLINE Vec3 advance(const Vec3& r, const Vec3& d, double s) {
  return Vec3{r.x + s * d.x, r.y + s * d.y, r.z + s * d.z};
}

}  // namespace rpt
